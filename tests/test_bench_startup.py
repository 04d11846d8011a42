"""bench/bench_startup.py times each command in a fresh process against a bare interpreter."""

from bench import bench_startup


def test_the_startup_bench_prints_every_command_against_the_bare_interpreter(capsys):
    assert bench_startup.main(["--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines[1:]] == list(bench_startup.COMMANDS)
    assert lines[1].split()[-2:] == ["0.000s", "0.00"]  # the bare interpreter, against itself
    assert float(lines[3].split()[-1]) > 0  # clipmem --version costs something over a bare interpreter
