"""A client made from proto/ alone (fresh stubs in a temp dir, no project code) submits and watches."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.service.conftest import TOKEN

ROOT = Path(__file__).resolve().parents[2]

CLIENT = textwrap.dedent(
    """
    import sys
    import grpc
    import training_pb2 as pb
    import training_pb2_grpc as rpc

    assert "ps" not in sys.modules
    address, token = sys.argv[1], sys.argv[2]
    stub = rpc.TrainingServiceStub(grpc.insecure_channel(address))
    auth = (("authorization", "Bearer " + token),)
    spec = pb.JobSpec(
        name="from-proto",
        data=pb.DataSpec(source="digits"),
        model=pb.ModelSpec(layers=[
            pb.Layer(type="dense", units=32, activation=pb.Activation(type="relu")),
            pb.Layer(type="dense", units=10),
        ]),
        optimizer=pb.OptimizerSpec(name="adam", lr=0.01),
        training=pb.TrainingSpec(workers=1, epochs=3, batch_size=64),
    )
    job = stub.SubmitJob(pb.SubmitJobRequest(spec=spec, job_id="proto-only"), metadata=auth).job
    print("submitted", job.job_id, pb.JobState.Name(job.state))
    last = None
    for reply in stub.WatchJob(pb.WatchJobRequest(job_id=job.job_id), metadata=auth):
        last = reply.event
        print(last.WhichOneof("event"))
    assert last.WhichOneof("event") == "finished", last
    assert last.finished.state == pb.JOB_STATE_SUCCEEDED, last.finished.error
    print("test_accuracy", last.finished.result.test_accuracy)
    """
)


def test_client_generated_from_proto_alone(service, tmp_path):
    import grpc_tools
    from grpc_tools import protoc

    proto_dir = ROOT / "proto" / "ps" / "v1"
    well_known = Path(grpc_tools.__file__).parent / "_proto"  # every protoc ships these
    assert (
        protoc.main(
            [
                "protoc",
                f"-I{proto_dir}",
                f"-I{well_known}",
                f"--python_out={tmp_path}",
                f"--grpc_python_out={tmp_path}",
                "training.proto",
            ]
        )
        == 0
    )
    (tmp_path / "client.py").write_text(CLIENT)
    out = subprocess.run(
        [sys.executable, "client.py", service.address, TOKEN],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "submitted proto-only" in out.stdout and "evaluation" in out.stdout
    accuracy = float(out.stdout.strip().splitlines()[-1].split()[-1])
    assert accuracy > 0.85
