from citycard.terminal_kit.__main__ import main


def test_simulate_a_day_in_process(capsys, tmp_path):
    assert main(["--fare", "150", "simulate", "--taps", "60", "--cards", "8", "--queue", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "60 taps" in out and "approved" in out
    assert (tmp_path / "taps.sqlite").exists()
