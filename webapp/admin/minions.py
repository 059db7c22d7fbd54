"""Minions and their XP ledger."""
from __future__ import annotations

from sqlalchemy.orm import joinedload

from webapp.accounts.audit import record
from webapp.admin.base import USER_LOOKUP, SecureModelView, admin_action, choice_filter, choices, lookup
from webapp.admin.catalog import MODEL_LOOKUP
from webapp.minions.models import MINION_STATUSES, Minion, MinionXpEvent, MinionXpGain
from webapp.minions.services import recompute_xp
from webapp.providers.models import ModelVersion

CATEGORY = "Minions"


class MinionsView(SecureModelView):
    read_permission = "minions.read"
    write_permission = "minions.write"


class MinionView(MinionsView):
    column_list = ("id", "name", "owner", "model", "model_version", "status", "xp", "level", "created_at")
    column_searchable_list = ("name", "owner.email")
    column_filters = (choice_filter(Minion.status, "Status", MINION_STATUSES), "owner.email", "created_at")
    column_sortable_list = ("id", "name", "status", "xp", "level", "created_at")
    # xp always equals the sum of the ledger and level follows from it: never typed in.
    form_columns = ("owner", "model", "model_version", "name", "avatar_url", "status", "attributes")
    form_choices = {"status": choices(MINION_STATUSES)}
    form_ajax_refs = {"owner": USER_LOOKUP, "model": MODEL_LOOKUP, "model_version": lookup("version")}
    maintained = ("xp", "level")
    eager = (joinedload(Minion.owner), joinedload(Minion.model),
             joinedload(Minion.model_version).joinedload(ModelVersion.model))

    @admin_action("recompute_xp", "Recompute XP from ledger", "minions.write")
    def action_recompute_xp(self, ids: list[str]) -> None:
        def recompute(minion: Minion) -> bool:
            changes = recompute_xp(minion)
            if changes:
                record("admin.recompute_xp", minion, changes)
            return bool(changes)

        self.run_bulk(ids, recompute, "XP recomputed: {count} minions corrected, {skipped} were right.")


class MinionXpEventView(MinionsView):
    """The XP ledger: append-only, so read-only here (corrections go through recompute)."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "minion", "delta", "reason", "training_job", "created_at")
    column_searchable_list = ("reason", "minion.name")
    column_filters = ("reason", "created_at", "minion.name")
    eager = (joinedload(MinionXpEvent.minion), joinedload(MinionXpEvent.training_job))


class MinionXpGainView(MinionsView):
    """The leaderboard's week and month gains, kept with the ledger by award_xp: read-only."""

    allow_create = allow_edit = allow_delete = False
    column_list = ("id", "minion", "period", "period_start", "gained")
    column_searchable_list = ("minion.name",)
    column_filters = ("period", "period_start", "minion.name")
    eager = (joinedload(MinionXpGain.minion),)


def views() -> list[SecureModelView]:
    return [
        MinionView(Minion, "admin_minions", "Minions", CATEGORY),
        MinionXpEventView(MinionXpEvent, "admin_minion_xp_events", "XP ledger", CATEGORY),
        MinionXpGainView(MinionXpGain, "admin_minion_xp_gains", "XP per week and month", CATEGORY),
    ]
