"""GPU workers: a job that asks for GPUs trains on CUDA where there is one, and is refused up
front on a cluster without any."""

from __future__ import annotations

import pytest
import ray
import torch

from ps.jobs.errors import ResourceError
from ps.jobs.runner import run_job
from ps.spec import parse_spec
from tests.runtime.helpers import spec

GPU_JOB = spec(
    data={"layout": "image"},
    model={
        "layers": [
            {
                "type": "conv2d",
                "filters": 16,
                "kernel_size": 3,
                "padding": "same",
                "activation": "relu",
            },
            {"type": "batch_norm"},
            {"type": "global_avg_pool"},
            {"type": "dense", "units": 10},
        ]
    },
    training={"workers": 1, "epochs": 3, "worker_resources": {"num_cpus": 1, "num_gpus": 1}},
)


def test_a_gpu_job_on_a_cluster_without_gpus_is_refused_before_anything_starts(
    ray_runtime, tmp_path
):
    if ray.cluster_resources().get("GPU", 0) >= 1:
        pytest.skip("this cluster has a GPU")
    with pytest.raises(ResourceError, match="needs 1 GPU"):
        run_job(parse_spec(GPU_JOB), tmp_path)
    assert not tmp_path.joinpath("spec.yaml").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_worker_trains_on_cuda(ray_runtime, tmp_path):
    result = run_job(parse_spec(GPU_JOB), tmp_path)
    assert result.steps == result.total_steps
    assert {w["device"] for w in result.workers} == {"cuda"}
    assert result.test_accuracy > 0.8
