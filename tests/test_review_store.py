import json
import re
import sqlite3
from collections import Counter

import numpy as np
import pytest
from sqlalchemy import Column, Integer, MetaData, Table, text
from sqlalchemy.exc import DBAPIError

from clipmem_core.errors import ClipmemError
from clipmem_core.review import store as store_mod
from clipmem_core.review.roles import is_lead
from clipmem_core.review.store import open_store


def test_verdicts_are_attributed_and_the_latest_counts(store):
    first = store.add_verdict("r", "a", "ann", "Miscaptioned", suggested_caption="a cat", note="n")
    store.add_verdict("r", "a", "bob", "correct")
    store.add_verdict("r", "b", "ann", "unsure")
    store.add_verdict("r", "a", "ann", "correct")  # ann changes her mind
    store.add_verdict("other", "a", "ann", "unsure")

    frame = store.verdicts("r")
    assert len(frame) == 4 and set(frame["run"]) == {"r"}
    row = frame[frame["id"] == first].iloc[0]
    assert (row["verdict"], row["suggested_caption"], row["note"]) == ("mis-captioned", "a cat", "n")
    assert str(frame["created_at"].dt.tz) == "UTC"
    assert store.latest_verdicts("r", reviewer="ann") == {"a": "correct", "b": "unsure"}
    assert store.latest_verdicts("r") == {"a": "correct", "b": "unsure"}
    assert list(store.verdicts("r", sample_ids=["b"])["sample_id"]) == ["b"]
    assert len(store.verdicts("r", reviewer="bob")) == 1
    assert len(store.current_verdicts("r")) == 3


@pytest.mark.parametrize("bad", ["wrong", "", "maybe"])
def test_bad_verdicts_and_names_are_refused_and_nothing_is_written(store, bad):
    with pytest.raises(ClipmemError, match="not one of"):
        store.add_verdict("r", "a", "ann", bad)
    with pytest.raises(ClipmemError, match="empty"):
        store.add_verdict("r", "a", "  ", "correct")
    with pytest.raises(ClipmemError):
        store.add_verdicts(
            "r",
            [
                {"sample_id": "a", "reviewer": "ann", "verdict": "correct"},
                {"sample_id": "b", "reviewer": "ann", "verdict": bad},
            ],
        )
    assert store.verdicts("r").empty


def test_session_assigns_each_sample_to_overlap_distinct_reviewers(store):
    samples = [f"s{i}" for i in range(10)]
    sid = store.create_session("r", "batch 1", samples, ["ann", "bob", "cy"], overlap=2, created_by="lead")

    queues = {r: store.queue(sid, r) for r in ("ann", "bob", "cy")}
    seen = Counter(s for q in queues.values() for s in q)
    assert seen == {s: 2 for s in samples}
    assert all(len(q) == len(set(q)) for q in queues.values())
    assert sorted(len(q) for q in queues.values()) == [6, 7, 7]  # balanced
    assert store.session_samples(sid) == samples

    done = queues["bob"][:3]
    for s in done:
        store.add_verdict("r", s, "bob", "correct", session_id=np.int64(sid))  # numpy ints from pandas
    store.add_verdict("r", queues["ann"][0], "ann", "unsure")  # outside the session still counts
    assert store.queue(sid, "bob") == queues["bob"][3:]
    assert store.queue(sid, "ann") == queues["ann"][1:]
    progress = store.session_progress(sid).set_index("reviewer")
    assert progress.loc["bob", ["assigned", "done", "remaining"]].tolist() == [7, 3, 4]
    assert progress.loc["ann", "done"] == 1 and progress.loc["cy", "done"] == 0
    assert list(store.sessions("r")["name"]) == ["batch 1"]
    assert store.verdicts("r")["session_id"].fillna(0).tolist() == [sid, sid, sid, 0]


@pytest.mark.parametrize("overlap", [0, 4])
def test_session_refuses_an_impossible_overlap(store, overlap):
    with pytest.raises(ClipmemError, match="overlap"):
        store.create_session("r", "s", ["a"], ["ann", "bob", "cy"], overlap=overlap, created_by="lead")


def test_a_second_session_of_the_same_name_is_refused_and_assigns_nothing(store):
    sid = store.create_session("r", "monday", ["a", "b"], ["ann", "bob"], 1, "lead")
    with pytest.raises(ClipmemError, match=rf"a review session named 'monday' exists already for this run \(#{sid}\)"):
        store.create_session("r", "monday", ["a", "b"], ["ann", "bob"], 1, "lead")
    assert store.sessions("r")["name"].tolist() == ["monday"]
    assert len(store.queue(sid, "ann")) + len(store.queue(sid, "bob")) == 2
    store.create_session("other run", "monday", ["a"], ["ann"], 1, "lead")  # another run's session may share it


def test_a_session_refuses_reviewers_who_differ_only_in_capitals(store):
    """The reviewers " ann, bob, Bob" made "Bob" a second reviewer with a batch of his own, which real bob never saw."""
    with pytest.raises(ClipmemError, match="reviewer “Bob” differs from “bob” only in capitals"):
        store.create_session("r", "s", ["a", "b"], ["ann", "bob", "Bob"], 1, "lead")
    store.add_verdict("r", "a", "cy", "correct")
    with pytest.raises(ClipmemError, match="reviewer “CY” differs from “cy” only in capitals"):
        store.create_session("r", "s", ["a", "b"], ["ann", "CY"], 1, "lead")
    assert store.sessions("r").empty
    store.create_session("r", "s", ["a", "b"], ["ann", "cy"], 1, "lead")


def test_unknown_session_is_a_clear_error(store):
    with pytest.raises(ClipmemError, match="no review session 99"):
        store.queue(99, "ann")


def test_resolutions_and_disagreements(store):
    store.add_verdict("r", "a", "ann", "mis-captioned", suggested_caption="a dog")
    store.add_verdict("r", "a", "bob", "correct")
    store.add_verdict("r", "b", "ann", "correct")
    store.add_verdict("r", "b", "bob", "correct")
    store.add_verdict("r", "c", "ann", "unsure")

    open_ = store.disagreements("r")
    assert list(open_["sample_id"]) == ["a"]
    assert open_.iloc[0]["votes"] == {"ann": "mis-captioned", "bob": "correct"}
    assert open_.iloc[0]["suggestions"] == ["a dog"] and open_.iloc[0]["resolved_by"] is None

    store.resolve("r", "a", "correct", resolved_by="lead")
    store.resolve("r", "a", "miscaptioned", resolved_by="lead2", caption="a dog")
    settled = store.disagreements("r").iloc[0]
    assert (settled["resolved_verdict"], settled["resolved_by"], settled["resolved_caption"]) == (
        "mis-captioned",
        "lead2",
        "a dog",
    )
    assert len(store.resolutions("r")) == 1


def test_everyone_is_a_lead_without_a_lead_list(monkeypatch):
    monkeypatch.delenv("CLIPMEM_LEADS", raising=False)
    assert is_lead("ann") and is_lead("anyone", leads_env="") and is_lead("bob", leads_env="  ")


def test_the_lead_list_is_trimmed_and_case_sensitive(monkeypatch):
    monkeypatch.setenv("CLIPMEM_LEADS", " lead , Ann@example.org,")
    assert is_lead("lead") and is_lead(" Ann@example.org ") and not is_lead("ann@example.org")
    assert not is_lead("bob") and is_lead("bob", leads_env="bob")  # an explicit list beats the env
    assert not is_lead("bob", leads_env=",")  # set but naming nobody: nobody leads


def test_resolve_refuses_a_non_lead_when_leads_are_named(store, monkeypatch):
    monkeypatch.setenv("CLIPMEM_LEADS", "lead")
    with pytest.raises(ClipmemError, match=r"bob is not a lead: only lead \(listed in CLIPMEM_LEADS\)"):
        store.resolve("r", "a", "correct", "bob")
    assert store.resolutions("r").empty and "resolve" not in set(store.audit_log("r")["action"])
    store.resolve("r", "a", "correct", " lead ")
    assert store.resolutions("r")["resolved_by"].tolist() == ["lead"]


def test_every_write_is_in_the_audit_log(store):
    vid = store.add_verdict("r", "a", "ann", "correct", note="fine")
    sid = store.create_session("r", "s", ["a", "b"], ["ann", "bob"], 1, "lead")
    store.resolve("r", "a", "correct", "lead")
    log = store.audit_log("r")
    assert list(log["action"]) == ["verdict", "session.create", "resolve"]
    assert list(log["actor"]) == ["ann", "lead", "lead"]
    assert json.loads(log["detail"].iloc[0])["verdict_id"] == vid
    assert json.loads(log["detail"].iloc[1])["session_id"] == sid
    assert store.audit_log()["action"].iloc[0] == "schema.upgrade"


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"])
def test_the_database_refuses_to_edit_the_audit_log(store, statement):
    store.add_verdict("r", "a", "ann", "correct")
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.execute(text(statement))
    assert list(store.audit_log()["actor"]) == ["clipmem", "ann"]


def test_default_store_is_a_wal_sqlite_file_beside_the_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    store = open_store(tmp_path / "cache")
    store.add_verdict("r", "a", "ann", "correct")
    store.close()
    db = tmp_path / "cache" / "review.sqlite"
    assert db.is_file()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_database_this_process_may_not_write_is_read_and_refuses_writes_in_words(tmp_path, monkeypatch):
    """A cache copied read-only: opening it in WAL mode wrote beside it, so even its reading failed."""
    monkeypatch.delenv("CLIPMEM_DB_URL", raising=False)
    store = open_store(tmp_path / "cache")
    store.add_verdict("r", "a", "ann", "correct")
    store.close()
    db = tmp_path / "cache" / "review.sqlite"
    before = db.read_bytes()
    monkeypatch.setattr(store_mod, "_writable", lambda path: False)  # root may write anything: say it may not
    read_only = open_store(tmp_path / "cache")
    assert read_only.read_only and read_only.verdicts("r")["verdict"].tolist() == ["correct"]
    with pytest.raises(ClipmemError, match=r"review\.sqlite is read-only here, so nothing can be recorded in it"):
        read_only.add_verdict("r", "b", "ann", "correct")
    read_only.close()
    assert db.read_bytes() == before
    monkeypatch.undo()
    assert not open_store(tmp_path / "cache").read_only


def test_env_url_overrides_the_default(tmp_path, monkeypatch):
    other = tmp_path / "elsewhere.sqlite"
    monkeypatch.setenv("CLIPMEM_DB_URL", f"sqlite:///{other}")
    open_store(tmp_path / "cache").add_verdict("r", "a", "ann", "correct")
    assert other.is_file() and not (tmp_path / "cache" / "review.sqlite").exists()


def test_older_schema_is_upgraded_in_order(db_url, monkeypatch):
    open_store(url=db_url).close()  # a database of this clipmem's version
    current = store_mod.SCHEMA_VERSION
    calls = []

    def one_more(conn):
        calls.append(current + 1)
        Table("extra_next", MetaData(), Column("id", Integer, primary_key=True)).create(conn)

    def two_more(conn):
        calls.append(current + 2)

    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", current + 2)
    monkeypatch.setattr(store_mod, "UPGRADES", {**store_mod.UPGRADES, current: one_more, current + 1: two_more})
    upgraded = open_store(url=db_url)
    assert calls == [current + 1, current + 2]
    log = upgraded.audit_log()
    assert json.loads(log["detail"].iloc[-1]) == {"from": current, "to": current + 2}
    open_store(url=db_url)  # already there: no step runs again
    assert calls == [current + 1, current + 2]


def test_an_id_taken_back_is_never_given_again(db_url):
    """SQLite gave a new verdict the id of the one just taken back, and the audit log then named one verdict
    id for two samples."""
    store = open_store(url=db_url)
    store.add_verdict("r", "a", "ann", "correct")
    taken_back = store.add_verdict("r", "b", "ann", "correct")
    assert store.undo_verdict("r", taken_back, "ann")
    assert store.add_verdict("r", "c", "ann", "correct") > taken_back
    resolution = store.resolve("r", "a", "correct", "lead")
    assert store.undo_resolution("r", resolution, "lead")
    assert store.resolve("r", "a", "mis-captioned", "lead") > resolution


def test_a_version_1_sqlite_database_keeps_its_ids_and_gives_none_again(tmp_path):
    """Its tables had no AUTOINCREMENT, which SQLite cannot add: they are rebuilt, ids and rows kept."""
    url = f"sqlite:///{tmp_path / 'review.sqlite'}"
    store = open_store(url=url)
    kept = store.add_verdict("r", "a", "ann", "mis-captioned", suggested_caption="a kite")
    taken_back = store.add_verdict("r", "b", "ann", "correct")
    store.undo_verdict("r", taken_back, "ann")
    store.close()
    with sqlite3.connect(tmp_path / "review.sqlite") as conn:  # as clipmem's schema 1 made the table
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'verdicts'").fetchone()[0]
        indexes = conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'verdicts' AND type = 'index'"
        ).fetchall()
        conn.execute("ALTER TABLE verdicts RENAME TO old")
        conn.execute("DROP INDEX ix_verdicts_run")
        conn.execute(sql.replace("AUTOINCREMENT", ""))
        for (index_sql,) in indexes:
            conn.execute(index_sql)
        conn.execute("INSERT INTO verdicts SELECT * FROM old")
        conn.execute("DROP TABLE old")
        conn.execute("DELETE FROM sqlite_sequence WHERE name = 'verdicts'")
        conn.execute("UPDATE clipmem_schema SET version = 1")
    upgraded = open_store(url=url)
    rows = upgraded.verdicts("r")
    assert rows[["id", "sample_id", "suggested_caption"]].values.tolist() == [[kept, "a", "a kite"]]
    assert upgraded.add_verdict("r", "c", "ann", "correct") > taken_back  # past the id the audit log names
    assert json.loads(upgraded.audit_log()["detail"].iloc[-2]) == {"from": 1, "to": 2}


def test_newer_schema_is_refused(db_url, monkeypatch):
    open_store(url=db_url).close()
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store_mod, "UPGRADES", {**store_mod.UPGRADES, 1: lambda conn: None})
    open_store(url=db_url).close()
    monkeypatch.setattr(store_mod, "SCHEMA_VERSION", 1)
    with pytest.raises(ClipmemError, match="schema version 2; this clipmem knows up to 1"):
        open_store(url=db_url)


def test_unreachable_database_is_a_clipmem_error_without_the_password():
    with pytest.raises(ClipmemError, match="cannot open the review database") as err:
        open_store(url="postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(err.value)


@pytest.mark.parametrize("url", ["not a url", "nosuchdb://x/y"])
def test_malformed_url_is_a_clipmem_error(url):
    with pytest.raises(ClipmemError, match="cannot open the review database"):
        open_store(url=url)


def test_missing_postgres_fails_under_ci_and_skips_locally(monkeypatch):
    from review_fixtures import unavailable

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        unavailable("no server")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no server"):
        unavailable("no server")


# --- hardening (issue 12) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.add_verdict("r", "a", "x" * 201, "correct"), "reviewer name is longer than 200"),
        (lambda s: s.add_verdict("r", "a", "ann\x00", "correct"), "reviewer name 'ann\\\\x00' holds control"),
        (lambda s: s.add_verdict("r", "a", "ann", "correct", note="n\x00te"), "note holds a NUL byte"),
        (lambda s: s.add_verdict("r", "a", "ann", "correct", suggested_caption="c\x00"), "suggested caption holds"),
        (lambda s: s.add_verdict("r" * 301, "a", "ann", "correct"), "run name is longer than 300"),
        (lambda s: s.add_verdict("r", "a" * 301, "ann", "correct"), "sample_id 'a"),
        (lambda s: s.add_verdict("r", "a\x00", "ann", "correct"), "holds control characters"),
        (lambda s: s.add_verdict("r", "a", "ann", "correct", note="n" * 10_001), "note is longer than 10,000"),
        (lambda s: s.create_session("r", "s" * 301, ["a"], ["ann"], 1, "lead"), "session name is longer"),
        (lambda s: s.resolve("r", "a", "correct", "lead", caption="\x00"), "caption holds a NUL byte"),
        (lambda s: s.add_verdicts("r", [{"sample_id": "a", "reviewer": "b" * 201, "verdict": "correct"}]), "longer"),
    ],
)
def test_names_and_texts_a_database_would_refuse_are_one_line_errors(store, call, message):
    """PostgreSQL raised DataError tracebacks for long names and NUL bytes; SQLite stored them."""
    with pytest.raises(ClipmemError, match=message) as info:
        call(store)
    assert "\n" not in str(info.value)
    assert store.verdicts("r").empty and store.audit_log().query("action != 'schema.upgrade'").empty


def test_a_database_error_on_read_is_a_clipmem_error(store):
    with pytest.raises(ClipmemError, match="review database") as info, store._transaction() as conn:
        conn.execute(text("SELECT * FROM no_such_table"))
    assert "\n" not in str(info.value)


def test_a_big_import_is_batched_and_still_all_or_nothing(store):
    """A 200k-row import made 3 statements a row and held SQLite's write lock for 110 s."""
    from sqlalchemy import event

    statements = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    records = [{"sample_id": f"s{i}", "reviewer": f"r{i % 3}", "verdict": "correct"} for i in range(12_000)]
    records[7]["note"] = "seven"
    assert store.add_verdicts("big", records) == 12_000
    writes = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(writes) <= 3 + 3 * (5 + 5)  # the reviewers, then per 5k-row batch a few multi-row INSERTs each
    frame = store.verdicts("big")
    assert len(frame) == 12_000 and frame["sample_id"].tolist() == [r["sample_id"] for r in records]
    assert frame.loc[frame["sample_id"] == "s7", "note"].tolist() == ["seven"]
    audit = store.audit_log("big")
    assert len(audit) == 12_000
    verdict_ids = [json.loads(d)["verdict_id"] for d in audit["detail"]]
    assert verdict_ids == frame["id"].tolist()  # each audit row names its own verdict
    records[11_999]["verdict"] = "nonsense"
    with pytest.raises(ClipmemError, match="not one of"):
        store.add_verdicts("big2", records)
    assert store.verdicts("big2").empty


def test_a_given_sqlite_database_in_a_folder_that_does_not_exist_is_refused_and_nothing_is_made(tmp_path):
    """A mistyped $CLIPMEM_DB_URL made its folders and a new, empty database: read-only commands then said
    "0 judged" and wrote empty drop lists without a word."""
    missing = tmp_path / "typo" / "dir" / "review.sqlite"
    with pytest.raises(ClipmemError, match=rf"would lie in {re.escape(str(missing.parent))}, which does not exist"):
        open_store(url=f"sqlite:///{missing}")
    assert not (tmp_path / "typo").exists()
    open_store(tmp_path / "new cache").close()  # the cache's own database still makes its folder
