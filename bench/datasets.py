"""The data sets (how many users and tasks, which database) and how seeded rows are named.

Seeded task ids are computed from (user number, task number), the same way in SQL (seeding),
in pgbench's expression language and in Lua (wrk). So pgbench and wrk can name any seeded task
of any user with no lookup at all, and both pick from exactly the same tasks.

The ids are valid version-4 UUIDs made of decimal digits: `GGGGGGGG-0000-4000-8000-KKKKKKKKKKKK`,
where K is the task's global number k = (u - 1) * tasks_per_user + i (unique) and G scatters
k over 90 million values (k * 7919 + 12345 mod 9e7), so consecutive tasks land far apart in the
primary-key index, as random UUIDs do.
"""

from __future__ import annotations

from dataclasses import dataclass

USER_PREFIX = "bench-user-"

# Sizes: (users, tasks per user).
FULL_SIZES = {"small": (50, 200), "large": (1_000, 1_000)}
SMOKE_SIZES = {"small": (10, 50), "large": (20, 100)}

ID_MULTIPLIER = 7919
ID_OFFSET = 12345
ID_SPREAD = 90_000_000
ID_HEAD_BASE = 10_000_000  # + (0 .. ID_SPREAD-1): always 8 digits
ID_TAIL_BASE = 100_000_000_000  # + k: always 12 digits


@dataclass(frozen=True)
class DataSet:
    name: str
    users: int
    tasks_per_user: int
    database: str

    @property
    def tasks(self) -> int:
        return self.users * self.tasks_per_user


def data_sets(names: list[str], smoke: bool, prefix: str) -> list[DataSet]:
    sizes = SMOKE_SIZES if smoke else FULL_SIZES
    unknown = [name for name in names if name not in sizes]
    if unknown:
        raise ValueError(f"unknown data set(s) {', '.join(unknown)}; choose from small, large")
    return [DataSet(name, *sizes[name], database=f"{prefix}_{name}") for name in names]


def user_id(number: int) -> str:
    return f"{USER_PREFIX}{number}"


def task_id(user: int, index: int, tasks_per_user: int) -> str:
    """The id of seeded task `index` (1-based) of user `user` (1-based)."""
    k = (user - 1) * tasks_per_user + index
    head = ID_HEAD_BASE + (k * ID_MULTIPLIER + ID_OFFSET) % ID_SPREAD
    return f"{head}-0000-4000-8000-{ID_TAIL_BASE + k}"


def task_id_sql(u: str, i: str, tasks_per_user: int) -> str:
    """SQL for the same id, from integer expressions `u` and `i` (no `%`: safe with psycopg2
    parameters)."""
    k = f"((({u})::bigint - 1) * {tasks_per_user} + ({i}))"
    return (
        f"(({ID_HEAD_BASE} + mod({k} * {ID_MULTIPLIER} + {ID_OFFSET}, {ID_SPREAD}))::text"
        f" || '-0000-4000-8000-' || ({ID_TAIL_BASE} + {k})::text)::uuid"
    )

