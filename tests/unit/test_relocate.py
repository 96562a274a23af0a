"""Re-rooting a moved home: which strings change, in SQLite cells and files, and only once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from runtime.relocate import (
    LOCATION_FILE,
    Move,
    recorded,
    relocate,
    rewrite_files,
    rewrite_sqlite,
)


def test_only_the_home_and_paths_under_it_are_rewritten() -> None:
    move = Move("/srv/home", "/data/copy")
    text = 'file:///srv/home/mlflow "/srv/home" /srv/homely /mnt/srv/home/x /srv/home/a b'
    assert move.rewrite(text) == (
        'file:///data/copy/mlflow "/data/copy" /srv/homely /mnt/srv/home/x /data/copy/a b'
    )


def test_a_percent_encoded_file_uri_is_rewritten_too() -> None:
    move = Move("/srv/my home", "/data/copy")
    assert move.rewrite("file:///srv/my%20home/mlflow/artifacts") == (
        "file:///data/copy/mlflow/artifacts"
    )


def test_a_move_into_a_subfolder_is_not_applied_twice() -> None:
    move = Move("/srv/h", "/srv/h/inner")
    once = move.rewrite("/srv/h/mlflow/artifacts")
    assert once == "/srv/h/inner/mlflow/artifacts" and move.rewrite(once) == once


def test_sqlite_text_cells_are_rewritten_in_one_transaction(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE runs (id INTEGER, uri TEXT, blob BLOB, n INTEGER)")
        connection.executemany(
            "INSERT INTO runs VALUES (?, ?, ?, ?)",
            [
                (1, "file:///srv/home/mlflow/1", b"/srv/home/raw", 7),
                (2, '{"uri": "/srv/home/tables/x.parquet"}', None, 8),
                (3, "/elsewhere/x", None, 9),
            ],
        )
    connection.close()
    assert rewrite_sqlite(database, Move("/srv/home", "/data/copy")) == 2
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT uri, blob, n FROM runs ORDER BY id").fetchall()
    connection.close()
    assert rows == [
        ("file:///data/copy/mlflow/1", b"/srv/home/raw", 7),  # bytes are not text: left alone
        ('{"uri": "/data/copy/tables/x.parquet"}', None, 8),
        ("/elsewhere/x", None, 9),
    ]


def test_a_store_records_its_home_and_rewrites_once_when_opened_elsewhere(
    tmp_path: Path,
) -> None:
    store = tmp_path / "copy" / "mlflow"
    store.mkdir(parents=True)
    (store / "MLmodel").write_text("artifact_path: file:///srv/home/mlflow/m\n")
    (store / LOCATION_FILE).write_text("/srv/home\n")
    moves: list[Move] = []

    def rewrite(move: Move) -> None:
        moves.append(move)
        rewrite_files([store / "MLmodel"], move)

    home = tmp_path / "copy"
    assert relocate(store, home, rewrite) == Move("/srv/home", str(home))
    assert (store / "MLmodel").read_text() == f"artifact_path: file://{home}/mlflow/m\n"
    assert recorded(store) == str(home)
    assert relocate(store, home, rewrite) is None and len(moves) == 1


def test_a_store_without_a_record_is_given_one_or_tells_its_old_home(tmp_path: Path) -> None:
    fresh, old = tmp_path / "fresh", tmp_path / "old"
    fresh.mkdir()
    old.mkdir()
    assert relocate(fresh, tmp_path, lambda move: None) is None
    assert recorded(fresh) == str(tmp_path)
    move = relocate(old, tmp_path, lambda move: None, infer=lambda: "/srv/home")
    assert move == Move("/srv/home", str(tmp_path)) and recorded(old) == str(tmp_path)
