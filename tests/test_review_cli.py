import io
import json
import re

import pandas as pd
import pytest
from review_fixtures import make_run

from clipmem_core.cli import main
from clipmem_core.formatting import fmt_count
from clipmem_core.review import estimate
from clipmem_core.review.store import open_store


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    return make_run(tmp_path / "cache", "run1", n=6)


def verdict_csv(path, rows, columns=("sample_id", "reviewer", "verdict", "suggested_caption", "note")):
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def test_import_export_and_agreement(run_dir, tmp_path, capsys):
    wrong = {("s00", "ann"), ("s00", "bob"), ("s03", "ann"), ("s03", "bob"), ("s01", "bob")}
    rows = [
        (
            f"s0{i}",
            r,
            "miscaptioned" if (f"s0{i}", r) in wrong else "correct",
            "better" if (i, r) == (0, "ann") else "",
            "",
        )
        for i in range(6)
        for r in ("ann", "bob")
    ]
    assert main(["review", "import", "--run", str(run_dir), "--file", str(verdict_csv(tmp_path / "v.csv", rows))]) == 0
    assert "imported 12 verdicts into run run1" in capsys.readouterr().out

    store = open_store(run_dir.parent)  # the default database lives in the run's cache root
    assert len(store.verdicts("run1")) == 12 and store.verdicts("run1")["suggested_caption"].notna().sum() == 1

    assert main(["review", "agreement", "--run", str(run_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_samples"] == 6 and report["n_reviewers"] == 2 and len(report["pairs"]) == 1
    assert main(["review", "agreement", "--run", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "Cohen's kappa ann / bob" in printed
    assert "(on 6 samples judged by 2 reviewers; 0 judged by one, not counted)" in printed
    assert "samples judged: 6 by 2 reviewers; 6 judged by two or more, 1 disagreement\n" in printed  # s01 alone

    out = tmp_path / "drop.parquet"
    assert (
        main(
            [
                "review",
                "export",
                "--run",
                str(run_dir),
                "--what",
                "droplist",
                "--format",
                "parquet",
                "--out",
                str(out),
                "--allow-unresolved",  # s01: ann and bob disagree
            ]
        )
        == 0
    )
    assert pd.read_parquet(out)["sample_id"].tolist() == ["s00", "s03"]
    assert (
        main(
            [
                "review",
                "export",
                "--run",
                str(run_dir),
                "--what",
                "cleaned",
                "--out",
                str(tmp_path / "c.csv"),
                "--replace-with-suggestion",
                "--allow-unresolved",
            ]
        )
        == 0
    )
    assert len(pd.read_csv(tmp_path / "c.csv")) == 6 - 1  # s00 replaced ("better"), s03 has no suggestion


def test_a_run_named_by_dot_from_inside_its_folder_is_the_run_by_its_folders_name(run_dir, monkeypatch, capsys):
    """`--run .` gave the run the name "": the agreement counted 0 judged, and an export wrote an empty drop
    list, over a run with verdicts."""
    open_store(run_dir.parent).add_verdict("run1", "s00", "ann", "mis-captioned")
    open_store(run_dir.parent).add_verdict("run1", "s00", "bob", "mis-captioned")
    monkeypatch.chdir(run_dir)
    assert main(["review", "agreement", "--run", ".", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_samples"] == 1
    monkeypatch.chdir(run_dir / "thumbs")
    assert main(["review", "agreement", "--run", "..", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_samples"] == 1


def test_an_export_counts_its_rows_and_says_when_a_drop_list_is_empty(run_dir, tmp_path, capsys):
    """An empty drop list was written with "wrote drop.csv" alone; `run --exclude` of it then trains on all."""
    args = ["review", "export", "--run", str(run_dir), "--what", "droplist", "--out"]
    assert main([*args, str(tmp_path / "empty.csv")]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"wrote {tmp_path / 'empty.csv'}: 0 samples to drop"
    assert "no sample of this run is decided mis-captioned: the drop list is empty" in err
    store = open_store(run_dir.parent)
    for reviewer in ("ann", "bob"):
        store.add_verdict("run1", "s00", reviewer, "mis-captioned")
    assert main([*args, str(tmp_path / "drop.csv")]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"wrote {tmp_path / 'drop.csv'}: 1 sample to drop" and "empty" not in err
    assert (
        main(["review", "export", "--run", str(run_dir), "--what", "verdicts", "--out", str(tmp_path / "v.csv")]) == 0
    )
    assert capsys.readouterr().out.strip().endswith(": 2 verdicts")


def test_an_export_to_dash_writes_the_table_to_standard_output_and_every_word_to_standard_error(
    run_dir, tmp_path, capsys, monkeypatch
):
    """`--out -` wrote a file named "-" into the working folder, so a drop list could not be piped."""
    store = open_store(run_dir.parent)
    for sample, verdict in (("s00", "mis-captioned"), ("s02", "mis-captioned"), ("s01", "correct")):
        store.add_verdict("run1", sample, "ann", verdict)
    monkeypatch.chdir(tmp_path)
    args = ["review", "export", "--run", str(run_dir), "--out", "-", "--what"]
    assert main([*args, "droplist"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == ["sample_id", "s00", "s02"]
    assert "wrote 2 samples to drop to standard output" in err and not (tmp_path / "-").exists()
    assert main([*args, "cleaned"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "filepath,caption,id,is_miscaptioned" and len(out.splitlines()) == 1 + 6 - 2
    assert "filepath is relative to the dataset root" in err


def test_a_parquet_export_to_dash_needs_a_pipe_and_reads_back(run_dir, capsysbinary, monkeypatch):
    """Parquet is binary: into a pipe it is the same table; on a terminal it would be noise, so it is refused."""
    for reviewer in ("ann", "bob"):
        open_store(run_dir.parent).add_verdict("run1", "s03", reviewer, "mis-captioned")
    args = ["review", "export", "--run", str(run_dir), "--out", "-", "--what", "droplist", "--format", "parquet"]
    assert main(args) == 0  # captured: not a terminal
    assert pd.read_parquet(io.BytesIO(capsysbinary.readouterr().out))["sample_id"].tolist() == ["s03"]
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main(args) == 2
    captured = capsysbinary.readouterr()
    assert b"parquet is binary" in captured.err and captured.out == b""
    monkeypatch.setattr("sys.stdout", None)  # `>&-`: it ended in a traceback
    assert main(args) == 2
    assert b"standard output is closed: give --out FILE instead of -" in capsysbinary.readouterr().err


def test_agreement_counts_are_written_with_thousands_separators(run_dir, capsys):
    """ "5000 by 2 reviewers; 5000 judged by two or more, 1,341 disagreements": two styles in one line."""
    store = open_store(run_dir.parent)
    for reviewer, verdict in (("ann", "correct"), ("bob", "correct")):
        store.add_verdicts(
            "run1", [{"sample_id": f"x{i:05d}", "reviewer": reviewer, "verdict": verdict} for i in range(1200)]
        )
    assert main(["review", "agreement", "--run", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert "samples judged: 1,200 by 2 reviewers; 1,200 judged by two or more, 0 disagreements" in printed
    assert "on 1,200 samples judged by 2 reviewers; 0 judged by one" in printed


def test_agreement_of_a_crowd_prints_the_pairs_that_share_most(run_dir, capsys):
    """A pair of reviewers a line: 3,000 reviewers printed tens of thousands of lines."""
    store = open_store(run_dir.parent)
    rows = [{"sample_id": f"x{i:03d}", "reviewer": f"r{i % 30:02d}", "verdict": "correct"} for i in range(300)]
    rows += [{"sample_id": f"x{i:03d}", "reviewer": f"r{(i + 1) % 30:02d}", "verdict": "correct"} for i in range(300)]
    rows += [{"sample_id": f"x{i:03d}", "reviewer": "lead", "verdict": "correct"} for i in range(40)]
    store.add_verdicts("run1", rows)
    assert main(["review", "agreement", "--run", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    kappa_lines = [line for line in printed.splitlines() if line.startswith("Cohen's kappa ")]
    assert "Cohen's kappa of 60 pairs of reviewers; the 20 pairs that share the most samples below" in printed
    assert len(kappa_lines) == 21
    assert all(
        line.endswith("on 10 samples (agreement 1.000)") for line in kappa_lines[1:]
    )  # neighbours share 10, the lead fewer
    assert main(["review", "agreement", "--run", str(run_dir), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["pairs"]) == 60


@pytest.mark.parametrize("what", ["verdicts", "cleaned", "droplist"])
@pytest.mark.parametrize("out", ["file", "-"])
def test_an_export_reads_the_verdict_history_once(run_dir, tmp_path, monkeypatch, capsys, what, out):
    """The note on the counting rule and the export each read it: about two seconds at 100,000 verdicts."""
    from clipmem_core.review.store import ReviewStore

    store = open_store(run_dir.parent)
    store.add_verdicts(
        "run1", [{"sample_id": "s01", "reviewer": r, "verdict": "mis-captioned"} for r in ("ann", "bob")]
    )
    reads = []
    real = ReviewStore.verdicts
    monkeypatch.setattr(ReviewStore, "verdicts", lambda self, *a, **k: reads.append(a) or real(self, *a, **k))
    target = "-" if out == "-" else str(tmp_path / "out.csv")
    assert main(["review", "export", "--run", str(run_dir), "--what", what, "--out", target]) == 0
    assert len(reads) == 1
    assert ("s01" in capsys.readouterr().out) == (out == "-" and what != "cleaned")


def test_agreement_of_one_session(run_dir, capsys):
    store = open_store(run_dir.parent)
    sid = store.create_session("run1", "s", ["s00", "s01"], ["ann", "bob"], 2, "lead")
    for reviewer in ("ann", "bob"):
        for sample in ("s00", "s01", "s02"):
            store.add_verdict("run1", sample, reviewer, "correct")
    assert main(["review", "agreement", "--run", str(run_dir), "--session", str(sid), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_samples"] == 2


def test_an_import_keeps_when_each_verdict_was_given_and_adds_nothing_twice(run_dir, tmp_path, capsys):
    """Verdicts brought over from another server were dated by the import: an older verdict replaced a
    reviewer's newer one, and the same file imported twice doubled the history."""
    store = open_store(run_dir.parent)
    store.add_verdict("run1", "s00", "ann", "correct")  # ann's verdict here, now
    columns = ("sample_id", "reviewer", "verdict", "note", "created_at")
    older = [("s00", "ann", "mis-captioned", "", "2026-11-30T09:00:00+01:00"), ("s01", "bob", "correct", "x", "")]
    path = verdict_csv(tmp_path / "elsewhere.csv", older, columns)
    assert main(["review", "import", "--run", str(run_dir), "--file", str(path)]) == 0
    assert "imported 2 verdicts" in capsys.readouterr().out
    current = store.current_verdicts("run1").set_index(["sample_id", "reviewer"])["verdict"]
    assert current["s00", "ann"] == "correct"  # the newer verdict still counts
    history = store.verdicts("run1", ["s00"])
    assert history["verdict"].tolist() == ["mis-captioned", "correct"]  # in the order they were given
    assert history["created_at"].iloc[0] == pd.Timestamp("2026-11-30T08:00:00Z")
    export = tmp_path / "export.csv"
    assert main(["review", "export", "--run", str(run_dir), "--what", "verdicts", "--out", str(export)]) == 0
    for again in (path, export):  # the same file twice; this run's own export brought back
        capsys.readouterr()
        assert main(["review", "import", "--run", str(run_dir), "--file", str(again)]) == 0
        out = capsys.readouterr().out
        undated = 1 if again == path else 0  # bob's row says no time: each import is a verdict given anew
        assert f"imported {fmt_count(undated, 'verdict')}" in out and "the run's history already holds" in out
    assert len(store.verdicts("run1")) == 4
    future = verdict_csv(tmp_path / "future.csv", [("s02", "ann", "correct", "", "2999-01-01")], columns)
    assert main(["review", "import", "--run", str(run_dir), "--file", str(future)]) == 2
    assert "line 2: created_at '2999-01-01' is in the future" in capsys.readouterr().err


@pytest.mark.parametrize("written", ["12/01/2026 09:00", "13/01/2026", "12.01.26", "01-12-2026"])
def test_an_imported_date_that_may_be_day_or_month_first_is_refused(run_dir, tmp_path, capsys, written):
    """pandas read 12/01/2026 month first and 13/01/2026 day first: a day-first file's dates went wrong
    without a word, and with them which verdict of a reviewer is the latest (the drop list came out empty)."""
    columns = ("sample_id", "reviewer", "verdict", "note", "created_at")
    path = verdict_csv(tmp_path / "dmy.csv", [("s00", "ann", "correct", "", written)], columns)
    assert main(["review", "import", "--run", str(run_dir), "--file", str(path)]) == 2
    assert f"line 2: created_at {written!r} does not say whether the day or the month comes first" in (
        capsys.readouterr().err
    )


def test_an_imported_time_with_nanoseconds_keeps_its_microseconds_without_a_warning(run_dir, tmp_path, recwarn):
    columns = ("sample_id", "reviewer", "verdict", "note", "created_at")
    path = verdict_csv(tmp_path / "ns.csv", [("s00", "ann", "correct", "", "2026-01-02T03:04:05.123456789Z")], columns)
    assert main(["review", "import", "--run", str(run_dir), "--file", str(path)]) == 0
    assert not [w for w in recwarn if "nanoseconds" in str(w.message)]
    stamp = open_store(run_dir.parent).verdicts("run1")["created_at"].iloc[0]
    assert stamp == pd.Timestamp("2026-01-02T03:04:05.123456Z")


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            [("s00", "ann", "correct", "", ""), ("nope", "ann", "correct", "", "")],
            "line 3: sample_id 'nope' is not in run run1",
        ),
        ([("s00", "ann", "correct", "", ""), ("s01", "ann", "wrong", "", "")], "line 3: verdict 'wrong' is not one of"),
        ([("s00", "", "correct", "", "")], "line 2: reviewer name is empty"),
    ],
)
def test_bad_import_exits_2_with_one_line_and_imports_nothing(run_dir, tmp_path, capsys, rows, message):
    path = verdict_csv(tmp_path / "v.csv", rows)
    assert main(["review", "import", "--run", str(run_dir), "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "nothing imported" in err and err.count("\n") == 1
    assert open_store(run_dir.parent).verdicts("run1").empty


@pytest.mark.parametrize(
    "content, name, message",
    [
        ("sample_id;reviewer;verdict\ns00;ann;correct\n", "v.csv", "separates its columns with ';', not commas"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb4", "v.xlsx", "is a spreadsheet: save it as CSV"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb4", "v.csv", "is a spreadsheet, not text: save it"),
        (
            "sample_id,reviewer,verdict\ns00,ann,correct\n",
            "v.tsv",
            "separates its columns with ',', not tabs .*: name it .csv",
        ),
        (
            b"sample_id,reviewer,verdict\ns00,Jos\xe9,correct\n",
            "v.csv",
            r"not UTF-8 text \(line 2, byte 34\); save it as UTF-8",
        ),
        (
            'sample_id,reviewer,verdict,note\ns00,ann,correct,"open\ns01,ann,correct,\ns02,ann,correct,\n',
            "v.csv",
            "line 2: .*A quoted field must close",
        ),
        (
            "sample_id,reviewer,verdict\ns00,ann,correct\ns01,ann,correct,a, b\n",
            "v.csv",
            "line 3: row has 5 fields but the header has 3",
        ),
        (
            'sample_id,reviewer,verdict,note\ns00,ann,correct,"two\nlines"\ns01,ann,correct,' + "x" * 10_001 + "\n",
            "v.csv",
            "line 4: note is longer than 10,000 characters",
        ),
        (
            "sample_id,reviewer,verdict\ns00,ann,correct\ns01,a\x00n,correct\n",
            "v.csv",
            r"line 3: reviewer name 'a\\x00n' holds control",
        ),
        (
            "sample_id,reviewer\ns00,ann\n",
            "v.csv",
            r"lacks the column\(s\) verdict .*; expected sample_id,reviewer,verdict\[",
        ),
        ("", "v.csv", "is empty: expected a header with sample_id, verdict"),
    ],
)
def test_a_hostile_import_file_names_its_line_and_what_to_do(run_dir, tmp_path, capsys, content, name, message):
    """A latin-1, semicolon-separated or badly quoted file, a long note or a NUL: read as datasets are, each
    error says where and what to do. Before, pandas' own words ("C error: EOF inside string", "lacks columns"
    for a semicolon file) or the store's, without the line."""
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["review", "import", "--run", str(run_dir), "--file", str(path)]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1, err
    assert open_store(run_dir.parent).verdicts("run1").empty


def test_a_tsv_or_parquet_export_imports_as_a_csv_does(run_dir, tmp_path, capsys):
    store = open_store(run_dir.parent)
    store.add_verdict("run1", "s00", "ann", "mis-captioned", suggested_caption="a dog", note="=1+1")
    store.add_verdict("run1", "s01", "bob", "correct")
    clean = make_run(run_dir.parent, "run1-clean", n=6)
    exported = tmp_path / "verdicts.parquet"
    assert main(["review", "export", "--run", str(run_dir), "--what", "verdicts", "--out", str(exported)]) == 0
    assert main(["review", "import", "--run", str(clean), "--file", str(exported)]) == 0
    columns = ["sample_id", "reviewer", "verdict", "suggested_caption", "note", "created_at"]
    carried, before = store.verdicts("run1-clean")[columns], store.verdicts("run1")[columns]
    assert (
        carried.sort_values("sample_id")
        .reset_index(drop=True)
        .equals(before.sort_values("sample_id").reset_index(drop=True))
    )
    assert (
        main(["review", "import", "--run", str(clean), "--file", str(exported)]) == 0
    )  # the same times: nothing twice
    assert "imported 0 verdicts" in capsys.readouterr().out
    (tmp_path / "v.tsv").write_text('sample_id\treviewer\tverdict\tnote\ns02\tcy\tcorrect\t"quoted, as typed"\n')
    assert main(["review", "import", "--run", str(clean), "--file", str(tmp_path / "v.tsv")]) == 0
    assert store.verdicts("run1-clean").set_index("sample_id").loc["s02", "note"] == '"quoted, as typed"'


def test_verdicts_carry_to_a_re_run_without_the_dropped_samples_only_when_asked(run_dir, tmp_path, capsys):
    """A cleaned re-run (--exclude) lacks the dropped samples: its verdicts import with --skip-unknown-samples."""
    rows = [
        ("s00", "ann", "correct", "", ""),
        ("dropped", "ann", "miscaptioned", "", ""),
        ("s01", "bob", "correct", "", ""),
    ]
    path = verdict_csv(tmp_path / "v.csv", rows)
    argv = ["review", "import", "--run", str(run_dir), "--file", str(path)]
    assert main(argv) == 2
    assert "pass --skip-unknown-samples" in capsys.readouterr().err
    assert open_store(run_dir.parent).verdicts("run1").empty
    assert main([*argv, "--skip-unknown-samples"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "imported 2 verdicts into run run1",
        "left out 1 row of samples run run1 does not hold",
    ]
    assert sorted(open_store(run_dir.parent).verdicts("run1")["sample_id"]) == ["s00", "s01"]
    bad = verdict_csv(tmp_path / "bad.csv", [("dropped", "ann", "correct", "", ""), ("s00", "ann", "wrong", "", "")])
    assert main(["review", "import", "--run", str(run_dir), "--file", str(bad), "--skip-unknown-samples"]) == 2
    assert "line 3: verdict 'wrong'" in capsys.readouterr().err  # every other bad row still imports nothing


def test_a_file_of_ones_own_keeps_a_leading_quote_that_an_export_would_have_added(run_dir, tmp_path):
    """Import unescaped every "'+", "'-", "'=" and "'@" as its own spreadsheet export's escaping: a hand-written
    suggestion "'+' sign in blue" came back as "+' sign in blue". Only a file with an export's header is
    unescaped now."""
    columns = ("sample_id", "reviewer", "verdict", "suggested_caption", "note")
    own = verdict_csv(
        tmp_path / "own.csv", [("s00", "ann", "mis-captioned", "'+' sign in blue", "'-' means none")], columns
    )
    assert main(["review", "import", "--run", str(run_dir), "--file", str(own)]) == 0
    store = open_store(run_dir.parent)
    assert store.verdicts("run1")[["suggested_caption", "note"]].values.tolist() == [
        ["'+' sign in blue", "'-' means none"]
    ]
    store.add_verdict("run1", "s01", "bob", "correct", note="=SUM(A1)")
    exported = tmp_path / "export.csv"
    assert main(["review", "export", "--run", str(run_dir), "--what", "verdicts", "--out", str(exported)]) == 0
    assert "'=SUM(A1)" in exported.read_text()  # escaped for a spreadsheet
    again = make_run(run_dir.parent, "run1-again", n=5)
    assert main(["review", "import", "--run", str(again), "--file", str(exported)]) == 0
    assert sorted(store.verdicts("run1-again")["note"].tolist()) == ["'-' means none", "=SUM(A1)"]


def test_a_leads_resolutions_carry_to_a_re_run_as_its_verdicts_do(run_dir, tmp_path, capsys, monkeypatch):
    """After a cleaned re-run the disagreements a lead had settled were open again, and the export was blocked
    until each was settled a second time."""
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")
    store = open_store(run_dir.parent)
    store.add_verdict("run1", "s00", "ann", "correct")
    store.add_verdict("run1", "s00", "bob", "mis-captioned")
    store.resolve("run1", "s00", "mis-captioned", "lead", note="=SUM(A1)")
    store.resolve("run1", "s01", "correct", "lead")
    clean = make_run(run_dir.parent, "run1-clean", n=6)
    for what in ("verdicts", "resolutions"):
        out = tmp_path / f"{what}.csv"
        assert main(["review", "export", "--run", str(run_dir), "--what", what, "--out", str(out)]) == 0
        assert main(["review", "import", "--run", str(clean), "--file", str(out), "--skip-unknown-samples"]) == 0
    assert "imported 2 resolutions into run run1-clean" in capsys.readouterr().out
    carried = store.resolutions("run1-clean").set_index("sample_id")
    before = store.resolutions("run1").set_index("sample_id")
    assert carried[["verdict", "note", "resolved_by", "created_at"]].equals(
        before[["verdict", "note", "resolved_by", "created_at"]]
    )  # the formula-like note comes back as it was written, not as the export escaped it
    assert main(["review", "import", "--run", str(clean), "--file", str(tmp_path / "resolutions.csv")]) == 0
    assert "imported 0 resolutions" in capsys.readouterr().out  # nothing twice
    one = verdict_csv(tmp_path / "one.csv", [("s02", "cy", "correct", "", "")])
    assert main(["review", "import", "--run", str(run_dir), "--file", str(one)]) == 0
    assert "imported 1 verdict into run" in capsys.readouterr().out  # not "1 verdicts"
    not_a_lead = verdict_csv(tmp_path / "ann.csv", [("s02", "correct", "ann")], ("sample_id", "verdict", "resolved_by"))
    assert main(["review", "import", "--run", str(clean), "--file", str(not_a_lead)]) == 2
    assert "nothing imported" in capsys.readouterr().err and len(store.resolutions("run1-clean")) == 2


def test_a_renamed_run_is_told_where_its_verdicts_are_and_gets_them_back(run_dir, tmp_path, capsys):
    """Review data is kept by run name: a renamed folder showed none of its verdicts, without a word."""
    store = open_store(run_dir.parent)
    store.add_verdict("run1", "s00", "ann", "mis-captioned")
    store.resolve("run1", "s00", "correct", "lead")
    renamed = run_dir.rename(run_dir.parent / "run1-server-a")
    estimate_argv = ["review", "estimate", "--run", str(renamed)]
    assert main(estimate_argv) == 0
    assert "the review database holds verdicts for runs this cache does not hold: run1 (1)" in capsys.readouterr().err
    assert main(["review", "rename-run", "--run", str(renamed), "--from", "run1", "--by", "lead"]) == 0
    assert "moved 1 verdict, with the resolutions and review sessions, from run1 to run1-server-a" in (
        capsys.readouterr().out
    )
    assert store.verdicts("run1-server-a")["sample_id"].tolist() == ["s00"] and store.verdicts("run1").empty
    assert store.resolutions("run1-server-a")["verdict"].tolist() == ["correct"]
    assert main(estimate_argv) == 0 and "note: run" not in capsys.readouterr().err
    store.add_verdict("elsewhere", "s01", "bob", "correct")
    assert main(["review", "rename-run", "--run", str(renamed), "--from", "elsewhere"]) == 2
    assert "has verdicts of its own (1): nothing moved" in capsys.readouterr().err


def test_verdicts_do_not_leave_a_run_folder_that_still_exists_unless_forced(run_dir, capsys):
    """`cp -a cache/run1 cache/copy` then `rename-run --run cache/copy --from run1` took every verdict away
    from run1, which still exists, without a word."""
    import shutil

    store = open_store(run_dir.parent)
    store.add_verdict("run1", "s00", "ann", "mis-captioned")
    copy = shutil.copytree(run_dir, run_dir.parent / "copy")
    assert main(["review", "rename-run", "--run", str(copy), "--from", "run1"]) == 2
    assert "is still a run: its verdicts would leave it" in capsys.readouterr().err
    assert store.verdicts("run1")["sample_id"].tolist() == ["s00"] and store.verdicts("copy").empty
    assert main(["review", "rename-run", "--run", str(copy), "--from", "run1", "--force"]) == 0
    assert store.verdicts("copy")["sample_id"].tolist() == ["s00"] and store.verdicts("run1").empty


@pytest.mark.parametrize(
    "argv, message",
    [
        (["import", "--file", "{tmp}/missing.csv"], "does not exist"),
        (["import", "--file", "{tmp}/cols.csv"], "lacks the column(s) verdict"),
        (["export", "--what", "verdicts", "--out", "{tmp}/x.csv", "--replace-with-suggestion"], "only applies"),
    ],
)
def test_bad_arguments_exit_2(run_dir, tmp_path, capsys, argv, message):
    pd.DataFrame({"sample_id": ["s00"], "reviewer": ["ann"]}).to_csv(tmp_path / "cols.csv", index=False)
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(["review", argv[0], "--run", str(run_dir), *argv[1:]]) == 2
    assert message in capsys.readouterr().err


def test_estimate_counts_the_judged_top_and_scales_the_judged_start_of_the_random_order(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(estimate, "MIN_AUDIT", 20)  # a small run: 40 samples
    run_dir = make_run(tmp_path / "cache", "big", n=40)  # ranked s00, s01, … by every queue
    assert main(["review", "random-order", "--run", str(run_dir), "--limit", "40"]) == 0
    order = capsys.readouterr().out.split()
    assert order[0] == "sample_id" and sorted(order[1:]) == [f"s{i:02d}" for i in range(40)]
    assert main(["review", "random-order", "--run", str(run_dir), "--limit", "-1"]) == 2  # printed 39 ids
    assert "--limit must be 1 or more, not -1" in capsys.readouterr().err
    top = [f"s{i:02d}" for i in range(5)]
    rest = [s for s in order[1:] if s not in top]
    rows = [(s, "ann", "mis-captioned" if s in top[:3] else "correct") for s in top]
    rows += [(s, "ann", "mis-captioned" if i < 2 else "correct") for i, s in enumerate(rest[:10])]
    verdicts = verdict_csv(tmp_path / "v.csv", rows, ("sample_id", "reviewer", "verdict"))
    assert main(["review", "import", "--run", str(run_dir), "--file", str(verdicts)]) == 0
    capsys.readouterr()
    assert main(["review", "estimate", "--run", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "3 mis-captioned in the first 5" in out and "2 of 10 mis-captioned" in out and "not enough" in out
    more = [(s, "ann", "correct") for s in rest[10:30]]
    verdict_csv(tmp_path / "w.csv", more, ("sample_id", "reviewer", "verdict"))
    assert main(["review", "import", "--run", str(run_dir), "--file", str(tmp_path / "w.csv")]) == 0
    capsys.readouterr()
    assert main(["review", "estimate", "--run", str(run_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # s05, judged as one of the random order's first 30, extends the judged top to six, and leaves the sample
    assert "s05" in rest[10:30] and "s06" not in rest[:30]
    assert (report["ranking"], report["top_judged"], report["top_miscaptioned"]) == ("combined", 6, 3)
    assert (report["random_judged"], report["random_miscaptioned"], report["enough"]) == (29, 2, True)
    assert report["count"] == pytest.approx(3 + 2 / 29 * 34) and report["low"] < report["count"] < report["high"]
    assert report["stopped_at_disagreement"] == {}
    tie = verdict_csv(tmp_path / "tie.csv", [(rest[3], "bob", "mis-captioned")], ("sample_id", "reviewer", "verdict"))
    assert main(["review", "import", "--run", str(run_dir), "--file", str(tie)]) == 0  # ann said correct: a tie
    capsys.readouterr()
    assert main(["review", "estimate", "--run", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "2 of 3 mis-captioned" in out and "not enough" in out  # the sample stops at the tie
    assert f"the random sample stops at sample {rest[3]}: its reviewers disagree and no lead has settled it" in out
    assert "the judged top stops" not in out  # it stops at s06, which nobody judged


def test_not_a_run_exits_2(tmp_path, capsys):
    assert main(["review", "agreement", "--run", str(tmp_path)]) == 2
    assert "not a clipmem run" in capsys.readouterr().err


@pytest.mark.parametrize("sub", [[], ["import"], ["export"], ["agreement"], ["estimate"], ["random-order"]])
def test_help(sub, capsys):
    """In this process: tests/test_cli.py proves once that `clipmem` and `python -m clipmem_core` are one program."""
    with pytest.raises(SystemExit) as exited:
        main(["review", *sub, "--help"])
    assert exited.value.code == 0 and "usage:" in capsys.readouterr().out


def test_results_that_a_lead_list_would_change_say_so_when_it_is_not_set(run_dir, tmp_path, capsys, monkeypatch):
    """The dashboard, served with CLIPMEM_LEADS, counts a non-lead's first verdict; a shell without it, the
    latest: the same database gave two drop lists without a word."""
    monkeypatch.delenv("CLIPMEM_LEADS", raising=False)
    store = open_store(run_dir.parent)
    store.add_verdict("run1", "s00", "erin", "mis-captioned")
    assert main(["review", "agreement", "--run", str(run_dir)]) == 0
    assert "note:" not in capsys.readouterr().err  # nobody changed a verdict: both rules agree
    store.add_verdict("run1", "s00", "erin", "correct")
    drop = ["review", "export", "--run", str(run_dir), "--what", "droplist", "--format", "csv"]
    assert main([*drop, "--out", str(tmp_path / "latest.csv")]) == 0
    err = capsys.readouterr().err
    assert "note: 1 reviewer verdict changed after it was first given; with CLIPMEM_LEADS unset" in err
    assert pd.read_csv(tmp_path / "latest.csv").empty  # erin's latest: correct
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")
    assert main([*drop, "--out", str(tmp_path / "first.csv")]) == 0
    assert "note:" not in capsys.readouterr().err
    assert pd.read_csv(tmp_path / "first.csv")["sample_id"].tolist() == ["s00"]  # erin's first: mis-captioned


def test_undated_rows_are_each_a_verdict_given_anew(run_dir, tmp_path, capsys):
    rows = [("s00", "ann", "correct", ""), ("s01", "ann", "correct", ""), ("s02", "bob", "correct", "")]
    rows_columns = ("sample_id", "reviewer", "verdict", "created_at")
    path = verdict_csv(tmp_path / "undated.csv", rows, rows_columns)
    assert main(["review", "import", "--run", str(run_dir), "--file", str(path)]) == 0
    first = capsys.readouterr()
    assert "imported 3 verdicts" in first.out and "note:" not in first.err  # not 1 and "2 already held"
    assert main(["review", "import", "--run", str(run_dir), "--file", str(path)]) == 0
    again = capsys.readouterr()
    assert "imported 3 verdicts" in again.out  # still given anew: the file cannot say it is the same
    assert "note: 3 undated rows say what the run's history already holds" in again.err
    assert "and were added again" in again.err
    changed = verdict_csv(tmp_path / "changed.csv", [("s00", "ann", "mis-captioned", "")], rows_columns)
    assert main(["review", "import", "--run", str(run_dir), "--file", str(changed)]) == 0
    assert "note:" not in capsys.readouterr().err  # a new verdict, not a repeat


def test_the_written_format_follows_the_files_suffix_and_a_mismatch_is_refused(run_dir, tmp_path, capsys):
    """A drop list named .parquet was written as CSV, and `run --exclude` called it unreadable; a name
    ending in .xlsx got CSV too, and --format parquet wrote Parquet into a .csv."""
    open_store(run_dir.parent).add_verdict("run1", "s00", "ann", "mis-captioned")
    drop = ["review", "export", "--run", str(run_dir), "--what", "droplist"]
    assert main([*drop, "--out", str(tmp_path / "d.parquet")]) == 0
    assert pd.read_parquet(tmp_path / "d.parquet")["sample_id"].tolist() == ["s00"]
    assert main([*drop, "--out", str(tmp_path / "d.csv"), "--format", "parquet"]) == 2
    assert "d.csv ends in .csv but --format parquet was asked: name the file .parquet" in capsys.readouterr().err
    assert main([*drop, "--out", str(tmp_path / "d.xlsx")]) == 2
    assert "clipmem writes .csv, .tsv or .parquet files" in capsys.readouterr().err
    assert not (tmp_path / "d.csv").exists() and not (tmp_path / "d.xlsx").exists()
    assert main(["suspects", "--run", str(run_dir), "--top", "3", "--out", str(tmp_path / "s.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 3
