from __future__ import annotations

from alphaplus.commands.worker import flower_args


def test_flower_listens_on_loopback_unless_told_otherwise() -> None:
    assert flower_args([]) == ["--address=127.0.0.1"]
    assert flower_args(["--port=5556"]) == ["--address=127.0.0.1", "--port=5556"]
    assert flower_args(["--address=0.0.0.0", "--basic-auth=u:p"]) == [
        "--address=0.0.0.0", "--basic-auth=u:p"]
    assert flower_args(["--address", "10.1.2.3"]) == ["--address", "10.1.2.3"]
