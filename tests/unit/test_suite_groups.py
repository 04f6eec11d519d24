"""The suite's own layout: the tests with clusters of their own are really grouped for xdist."""

from __future__ import annotations

from tests.conftest import ISOLATED, ISOLATED_GROUP


def test_every_collected_test_has_its_xdist_group(request):
    items = request.session.items
    loadgroup = request.config.getoption("dist", "no") == "loadgroup"
    wrong = []
    for item in items:
        isolated = str(item.path.relative_to(request.config.rootpath)) in ISOLATED
        groups = [m.args[0] for m in item.iter_markers("xdist_group")]
        if groups != ([ISOLATED_GROUP] if isolated else []):
            wrong.append(f"{item.nodeid}: {groups}")
        elif loadgroup and isolated != item.nodeid.endswith(f"@{ISOLATED_GROUP}"):
            wrong.append(f"{item.nodeid}: xdist did not apply the group")
    assert not wrong, wrong
