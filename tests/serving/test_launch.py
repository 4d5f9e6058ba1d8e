"""The bentoml serve launcher refuses anything but a serve command, naming what it expected."""

from __future__ import annotations

import pytest

from ai_factory.serving.launch import main


def test_the_launcher_needs_a_serve_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--metrics-dir", str(tmp_path / "m"), "build", "."])
    assert exit_.value.code == 2
    assert "expected the bentoml command after the options: serve <bento>" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # nothing created for a refused command
