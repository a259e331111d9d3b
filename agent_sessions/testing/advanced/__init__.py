"""The advanced-session checks: branches, turns and usage, one async check each.

They run on any session with the methods of the SDK's ``AdvancedSQLiteSession``, through the same
:class:`~agent_sessions.testing.Harness` as the session checks: ``open(session_id)`` returns a
session object on the one database under test, and a second call with the same id a second
object on it (used only if ``persistent``). A check first asks, with :func:`requires`, for the
methods it calls; a session without one raises :class:`Unsupported` rather than failing, so a
class with fewer capabilities runs the checks it can::

    from agent_sessions.testing import ADVANCED_CHECKS, Harness, Unsupported

    @pytest.mark.parametrize("check", ADVANCED_CHECKS, ids=lambda c: c.__name__)
    async def test_advanced(check, tmp_path):
        path = tmp_path / "db"
        harness = Harness(name="mine", open=lambda sid: Mine(session_id=sid, db_path=path))
        try:
            await check(harness)
        except Unsupported as exc:
            pytest.skip(str(exc))
        finally:
            await harness.close_all()

Turn ``n`` is the ``n``-th user message of a branch's visible history, as in the SDK. Like the
session checks, these import nothing beyond the SDK and the standard library (and, to run an
agent for the usage checks, :class:`~agent_sessions.offline.OfflineModel`).
"""

from __future__ import annotations

from ..checks import run_checks
from ..sessions import Check, Harness
from . import branch_checks as branches
from . import query_checks as queries
from .kit import Unsupported, requires

__all__ = ["ADVANCED_CHECKS", "Unsupported", "requires", "run_advanced_checks"]

ADVANCED_CHECKS: list[Check] = [
    branches.check_branch_from_turn,
    branches.check_missing_turn_refused,
    branches.check_branch_from_content,
    branches.check_switch_back_and_forth,
    branches.check_unknown_branch_refused,
    branches.check_list_branches,
    branches.check_delete_branch,
    branches.check_delete_branch_guards,
    branches.check_delete_keeps_forks,
    branches.check_branch_ids_never_reused,
    branches.check_current_branch,
    branches.check_second_object_sees_switch,
    branches.check_limit_on_branch,
    branches.check_get_items_by_branch_id,
    branches.check_pop_on_branch_keeps_main,
    branches.check_pop_turn_on_branch,
    branches.check_clear_on_branch_keeps_main,
    branches.check_clear_on_main_removes_branches,
    queries.check_conversation_turns,
    queries.check_turns_on_branch,
    queries.check_find_turns_by_content,
    queries.check_conversation_by_turns,
    queries.check_tool_usage,
    queries.check_run_usage,
    queries.check_usage_replaced,
    queries.check_usage_per_branch,
    queries.check_pop_drops_usage_of_emptied_turn,
    queries.check_sdk_keyword_names,
]
"""Every advanced check, in a stable order; each is an async function taking a :class:`Harness`."""


async def run_advanced_checks(harness: Harness) -> dict[str, BaseException | None]:
    """Run every advanced check against ``harness``; map each name to its failure or None.

    A check that maps to an :class:`Unsupported` did not run: the session lacks what it needs.
    """
    return await run_checks(ADVANCED_CHECKS, harness)
