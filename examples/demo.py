"""A small module to try Pilotfish on: completion inside `mean`, actions on `load_users`."""

import sqlite3
from dataclasses import dataclass


@dataclass
class User:
    name: str
    age: int


def mean(values):
    if not values:
        return 0.0
    total = 0
    for v in values:
        total += v
    return 


def load_users(db_path, min_age):
    conn = sqlite3.connect(db_path)
    rows = conn.execute(f"SELECT name, age FROM users WHERE age >= {min_age}").fetchall()
    return [User(name, age) for name, age in rows]
