"""The queue's view of resources: a chosen job holds its share until released, whatever Ray
has placed so far (two jobs that do not fit together never start at once)."""

from __future__ import annotations

from ps.jobs.capacity import Capacity


def test_a_chosen_job_holds_its_resources_until_released():
    capacity = Capacity(lambda: {"CPU": 4.0, "memory": 8.0})
    job = {"CPU": 3.0, "memory": 2.0}
    assert capacity.fits(job)
    capacity.reserve("first", job)  # chosen: nothing of it placed on Ray yet
    assert not capacity.fits(job)  # the second waits although Ray still shows 4 CPUs free
    assert capacity.fits({"CPU": 1.0})
    assert capacity.free() == {"CPU": 1.0, "memory": 6.0}
    capacity.release("first")
    assert capacity.fits(job)
    assert not capacity.fits({"GPU": 1.0})  # a kind the cluster does not have
