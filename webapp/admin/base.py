"""The one secure base for admin views: permissions, safe saves, audit trail, cheap counts, streamed CSV.

Every ModelView declares its domain's permissions once::

    class PlanView(SecureModelView):
        read_permission = "billing.read"
        write_permission = "billing.manage"

Reading needs ``admin.access`` and ``read_permission``; creating, editing,
deleting, bulk actions and ajax lookups also need ``write_permission``.
"""
from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, NamedTuple

from flask import (
    abort, current_app, flash, g, has_request_context, redirect, request, stream_with_context, url_for,
)
from flask_admin import BaseView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_admin.helpers import get_redirect_target
from flask_login import current_user
from markupsafe import Markup
from sqlalchemy import BigInteger, Column, any_, case, func, inspect, literal_column, or_, select, table, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import MANYTOONE, aliased, joinedload
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.wrappers import Response

from webapp.accounts.access import has_permission, sign_in_redirect
from webapp.accounts.audit import SECRET_FIELDS, record
from webapp.accounts.models import AuditEvent
from webapp.admin.fields import AdminConverter, AdminFilterConverter, AdminForm, LockVersionField
from webapp.admin.keyset import AFTER, BEFORE, KeysetOrder, keyset_order
from webapp.extensions import db
from webapp.inputs import INT32_MAX
from webapp.times import iso_utc, when

log = logging.getLogger(__name__)

ADMIN_PERMISSION = "admin.access"
# Columns whose values never leave the database through the admin.
SECRET_COLUMNS = frozenset(SECRET_FIELDS) - {"password", "token", "api_key"}
# Columns the database or the app keeps up to date; forms never write them.
MAINTAINED_COLUMNS = ("id", "created_at", "updated_at", "lock_version")
FORMULA_PREFIXES = ("=", "+", "-", "@")
# Spreadsheets also run a formula after leading whitespace, and treat tab and CR as cell starts (OWASP).
FORMULA_LEADS = ("\t", "\r")
EXPORT_BATCH = 500
HISTORY_LIMIT = 50
INLINE_LIMIT = 10

STALE_MESSAGE = (
    "Someone else saved this record after you opened it, so your changes were not saved. "
    "Reload the page to see the current values, then make your edit again."
)
DEPENDANTS_MESSAGE = (
    "This record cannot be deleted because other records still refer to it. "
    "Delete or reassign those first."
)
CONFLICT_MESSAGE = (
    "The record could not be saved: a value conflicts with another record (for example a "
    "name, code or email already in use) or a required link is missing. Check the values and try again."
)
SAVE_FAILED_MESSAGE = "The record could not be saved. Check the values and try again."


def may(code: str) -> bool:
    """True when the signed-in user holds ``code`` (False outside a request)."""
    return has_request_context() and has_permission(current_user, code)


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula is prefixed with a quote."""
    if isinstance(value, str) and (value.startswith(FORMULA_LEADS) or value.lstrip().startswith(FORMULA_PREFIXES)):
        return "'" + value
    return value


def row_id(raw: Any) -> int | None:
    """A record id from a form or query string, or None when it is no id an id column can hold."""
    text = str(raw).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    key = int(text)
    return key if key <= INT32_MAX else None


def percent(view: Any, context: Any, model: Any, name: str) -> str:
    """A column_formatters entry for a 0..1 fraction: ``0.35`` shows as ``35%``."""
    value = getattr(model, name)
    return "—" if value is None else f"{value:.0%}"


def choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    """(value, label) pairs for a string enumeration column."""
    return [(value, value.replace("_", " ")) for value in values]


def choice_filter(column: Any, label: str, values: tuple[str, ...]) -> FilterEqual:
    """An "equals" filter offering the column's allowed values as a select."""
    return FilterEqual(column, label, options=choices(values))


def lookup(*fields: str) -> dict[str, Any]:
    """form_ajax_refs options: a searchable select over ``fields`` instead of a dropdown of every row."""
    return {"fields": fields, "page_size": 10}


USER_LOOKUP = lookup("email", "display_name")


def admin_action(name: str, text: str, permission: str, confirmation: str | None = None):
    """A bulk action that needs ``permission`` (checked by SecureModelView.is_action_allowed)."""
    from flask_admin.actions import action

    def decorator(handler: Callable) -> Callable:
        handler.required_permission = permission
        return action(name, text, confirmation)(handler)

    return decorator


class Inline(NamedTuple):
    """Records listed on a details page, the way Django admin's inlines do: ``model``'s rows whose ``column``
    points at the record shown."""

    heading: str
    model: Any
    column: Any
    # The relationships a record's name (its str) reads, loaded with it.
    named_by: tuple[str, ...] = ()


def details_url(table_name: str, record_id: Any) -> str | None:
    """The admin details page of a row, or None when no model view shows that table."""
    admin = current_app.extensions["admin"][0]
    views = {view.model.__tablename__: view for view in admin._views if isinstance(view, SecureModelView)}
    view = views.get(table_name)
    if view is None or record_id is None or not view.is_accessible():
        return None
    return url_for(f"{view.endpoint}.details_view", id=record_id)


class SecureAccessMixin:
    """The admin's one permission check, shared by model views and plain pages."""

    read_permission: str = ADMIN_PERMISSION

    def is_accessible(self) -> bool:
        return may(ADMIN_PERMISSION) and may(self.read_permission)

    def inaccessible_callback(self, name: str, **kwargs: Any):
        if not current_user.is_authenticated:
            return sign_in_redirect()
        abort(403)


class SecureView(SecureAccessMixin, BaseView):
    """A plain admin page (not a table) behind the same check."""


class SecureModelView(SecureAccessMixin, ModelView):
    write_permission: str = ADMIN_PERMISSION
    allow_create = True
    allow_edit = True
    allow_delete = True
    # Many-to-many relationships whose members are audited by name (e.g. a user's roles).
    audited_collections: tuple[str, ...] = ()
    # Loader options for the list, details and export queries, so related names cost no query per row.
    eager: tuple[Any, ...] = ()
    # The list page's loader options when they differ from eager's: a collection joined here costs
    # no query of its own (the page's rows are loaded by id, without LIMIT), even on an empty page.
    list_eager: tuple[Any, ...] | None = None
    # The loader options of the one record the details and edit pages show, when they differ from eager's:
    # a collection joined here costs no query of its own.
    record_eager: tuple[Any, ...] | None = None
    # Model-specific columns the app maintains (counters, derived values), on top of MAINTAINED_COLUMNS.
    maintained: tuple[str, ...] = ()
    # Records listed on the details page, all read in one query (inline_records).
    inlines: tuple[Inline, ...] = ()

    form_base_class = AdminForm
    model_form_converter = AdminConverter
    filter_converter = AdminFilterConverter()
    list_template = "admin/minion/list.html"
    # Stands for the row's id in the row buttons the list renders once per page (templates/admin/minion/list.html).
    ROW_ID_SLOT = "0ROWID0"
    details_template = "admin/minion/details.html"
    edit_template = "admin/minion/edit.html"
    can_view_details = True
    can_set_page_size = True
    page_size = 20
    page_size_options = (20, 50, 100)
    named_filter_urls = True
    # We count ourselves (get_list), never with Flask-Admin's exact COUNT(*).
    simple_list_pager = True
    column_display_pk = True
    column_editable_list: list[str] = []
    column_default_sort = ("created_at", True)
    column_type_formatters = {
        **ModelView.column_type_formatters,
        datetime: lambda view, value, name: when(value),
        dict: lambda view, value, name: view.json_text(value),
        list: lambda view, value, name: view.json_text(value),
        db.Model: lambda view, value, name: view.record_link(value),
    }
    column_type_formatters_detail = {
        **column_type_formatters,
        datetime: lambda view, value, name: when(value, seconds=True),
    }
    column_type_formatters_export = {
        datetime: lambda view, value, name: iso_utc(value),
        type(None): lambda view, value, name: "",
        bool: lambda view, value, name: "yes" if value else "no",
        db.Model: lambda view, value, name: str(value),
    }
    # Every list exports through the one streamed, formula-safe path (export below).
    can_export = True
    export_types = ["csv"]

    def __init__(self, model: type, endpoint: str, name: str, category: str, **kwargs: Any) -> None:
        hidden = set(SECRET_COLUMNS) | set(MAINTAINED_COLUMNS) | set(self.maintained)
        self.form_excluded_columns = sorted(hidden | set(self.form_excluded_columns or ()))
        self.column_details_exclude_list = sorted(SECRET_COLUMNS | set(self.column_details_exclude_list or ()))
        self.column_export_exclude_list = sorted(SECRET_COLUMNS | set(self.column_export_exclude_list or ()))
        self.column_exclude_list = sorted(SECRET_COLUMNS | set(self.column_exclude_list or ()))
        for option in ("column_list", "column_details_list", "column_export_list", "form_columns",
                       "column_searchable_list", "column_filters"):
            named = {str(getattr(c, "key", c)) for c in (getattr(self, option) or ())}
            if named & SECRET_COLUMNS:
                raise ValueError(f"{type(self).__name__}.{option} names a secret column")
        if self.form_columns:
            clash = {str(c) for c in self.form_columns} & hidden
            if clash:
                raise ValueError(f"{type(self).__name__}.form_columns names maintained columns {sorted(clash)}")
        super().__init__(model, db, name=name, category=category, endpoint=endpoint,
                         url=model.__tablename__, **kwargs)

    # --- who may do what -----------------------------------------------------

    def may_write(self) -> bool:
        return may(ADMIN_PERMISSION) and may(self.write_permission)

    @property
    def can_create(self) -> bool:
        return self.allow_create and self.may_write()

    @property
    def can_edit(self) -> bool:
        return self.allow_edit and self.may_write()

    @property
    def can_delete(self) -> bool:
        return self.allow_delete and self.may_write()

    def is_action_allowed(self, name: str) -> bool:
        handler = self._actions_data.get(name, (None,))[0]
        permission = getattr(handler, "required_permission", None)
        if name == "delete":
            return self.can_delete
        return permission is not None and may(ADMIN_PERMISSION) and may(permission)

    @expose("/ajax/lookup/")
    def ajax_lookup(self):
        # Lookups only feed the create and edit forms, so they need the write permission.
        if not self.may_write():
            abort(403)
        return super().ajax_lookup()

    # --- queries -------------------------------------------------------------

    def scaffold_auto_joins(self) -> list[Any]:
        """None: each view names its loads in ``eager`` (Flask-Admin would joinedload every listed relation)."""
        return []

    def get_query(self):
        return super().get_query().options(*self.eager)

    def get_one(self, id: Any) -> Any:
        """The row, with the loads of record_eager (else eager's)."""
        key = row_id(id)
        if key is None:
            return None
        eager = self.eager if self.record_eager is None else self.record_eager
        return super().get_query().options(*eager).filter(self.model.id == key).one_or_none()

    def get_count_query(self):
        return db.session.query(func.count()).select_from(self.model)

    def _apply_search(self, query, count_query, joins, count_joins, search):
        """Case-insensitive substring search as lower(column) LIKE, which the trigram indexes serve.

        A column of a related row (``user.email``) is matched through the foreign key,
        ``user_id = ANY(ARRAY(SELECT id FROM users WHERE ...))``, so every alternative is a
        condition on this table's own indexes and PostgreSQL combines them in one BitmapOr
        instead of joining and filtering the whole table.
        """
        for term in search.split():
            pattern = "%" + term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions = []
            for field, path in self._search_fields:
                pair = self.foreign_key_for(path)
                if pair is not None:
                    local, remote = pair
                    matches = select(remote).where(func.lower(field).like(pattern, escape="\\"))
                    conditions.append(self.in_subquery(local, matches))
                    continue
                query, joins, alias = self._apply_path_joins(query, joins, path, inner_join=False)
                column = field if alias is None else getattr(alias, field.key)
                conditions.append(func.lower(column).like(pattern, escape="\\"))
            query = query.filter(or_(*conditions))
        return query, count_query, joins, count_joins

    def foreign_key_for(self, path) -> tuple[Any, Any] | None:
        """(this table's column, the related table's column) when ``path`` is one many-to-one hop, else None."""
        if not path or len(path) != 1 or not hasattr(path[0], "property"):
            return None
        relation = path[0].property
        pairs = relation.local_remote_pairs
        if relation.direction is not MANYTOONE or len(pairs) != 1 or pairs[0][0].table is not self.model.__table__:
            return None
        return pairs[0]

    @staticmethod
    def in_subquery(column, matches) -> Any:
        """column = ANY(ARRAY(subquery)) on PostgreSQL, which an index scan can serve inside an OR."""
        if db.session.get_bind().dialect.name == "postgresql":
            return column == any_(func.array(matches.scalar_subquery()))
        return column.in_(matches)

    def get_list(self, page, sort_column, sort_desc, search, filters, execute=True, page_size=None):
        _, query = super().get_list(page, sort_column, sort_desc, search, filters, execute=False,
                                    page_size=page_size)
        count = self.row_count(query, filtered=bool(search or filters))
        if not execute:
            return count, query
        order = self.keyset_order(sort_column, sort_desc)
        if order is not None:
            query = self.keyset_page(query, order, page_size or self.page_size)
        rows = self.page_rows(query, sort_column, sort_desc)
        if order is not None and rows:
            g.admin_keyset = self.keyset_links(order, page or 0, rows)
        return count, rows

    def keyset_order(self, sort_column, sort_desc) -> KeysetOrder | None:
        """How keyset paging reads the list's order, or None when only offset paging serves it (webapp.admin.keyset)."""
        if sort_column is None:
            order = list(self._get_default_order())
            if len(order) != 1:
                return None
            field, _, sort_desc = order[0]
        else:
            field = self._sortable_columns.get(sort_column)
        column = getattr(field, "expression", field)
        return keyset_order(self.model.__table__, column if isinstance(column, Column) else None, bool(sort_desc))

    def keyset_page(self, page_query, order: KeysetOrder, page_size: int):
        """The page after (or before) the key in the query string, instead of the page number's offset."""
        keys = {name: request.args[name] for name in (AFTER, BEFORE) if name in request.args}
        if not keys:
            return page_query
        if len(keys) > 1:
            abort(400, "A list page is either after a row or before one, not both.")
        (name, raw), = keys.items()
        forward = name == AFTER
        return (page_query.limit(None).offset(None).filter(order.condition(order.parse(name, raw), forward))
                .order_by(None).order_by(*order.ordering(forward)).limit(page_size))

    def keyset_links(self, order: KeysetOrder, page: int, rows: list[Any]) -> dict[str, str]:
        """The pager's "previous" and "next": the neighbouring page numbers, reached by the boundary rows' keys."""
        view_args = self._get_list_extra_args()

        def link(number: int, name: str, row: Any) -> str:
            return self._get_list_url(view_args.clone(page=number, extra_args={**view_args.extra_args,
                                                                               name: order.key_of(row)}))

        return {"previous": link(page - 1, BEFORE, rows[0]), "next": link(page + 1, AFTER, rows[-1])}

    def keyed_pager_url(self, pager_url: Callable[[int], str], page: int) -> Callable[[int], str]:
        """The pager's link maker, with the neighbouring pages reached by key when the list is keyset-paged."""
        links = g.get("admin_keyset")
        if not links:
            return pager_url
        keyed = {page - 1: links["previous"], page + 1: links["next"]}
        return lambda number: keyed.get(number) or pager_url(number)

    def _get_list_extra_args(self):
        """The list's arguments; a page's key never rides along into the sort, filter or page-number links."""
        view_args = super()._get_list_extra_args()
        for name in (AFTER, BEFORE):
            view_args.extra_args.pop(name, None)
        return view_args

    def page_rows(self, page_query, sort_column, sort_desc) -> list[Any]:
        """The page's rows by late row lookup, so a deep page costs about what the first one does.

        The ids come from the list's filters, order and offset alone (an index-only scan of
        the (sort column, id) index skips the offset), then only those rows are loaded, with
        their eager loads and in the same order. Collections can be joined-loaded here
        (the outer query has no LIMIT to wrap), so the query count never depends on the page.
        """
        ids = page_query.with_entities(self.model.id).subquery()
        eager = self.eager if self.list_eager is None else self.list_eager
        rows = super().get_query().options(*eager).filter(self.model.id.in_(select(ids.c.id)))
        rows, _ = self._apply_sorting(rows, {}, sort_column, sort_desc)
        return rows.all()

    def _apply_sorting(self, query, joins, sort_column, sort_desc):
        """The chosen order, then id in the same direction: pages never overlap and (column, id) indexes serve it."""
        query, joins = super()._apply_sorting(query, joins, sort_column, sort_desc)
        if sort_column is None:
            order = list(self._get_default_order())
            fields = [field for field, _, _ in order]
            sort_desc = order[-1][2] if order else False
        else:
            fields = [self._sortable_columns.get(sort_column)]
        if not any(field is self.model.id for field in fields):
            query = query.order_by(self.model.id.desc() if sort_desc else self.model.id)
        return query, joins

    def row_count(self, query, filtered: bool) -> int:
        """Rows for the pager, without an exact COUNT(*) over a large table, in one query whatever the size.

        Unfiltered lists of big tables use the planner's estimate; anything else is
        counted up to the threshold ("more than N"). ``g.admin_count`` tells the pager which.
        """
        threshold = current_app.config["COUNT_ESTIMATE_THRESHOLD"]
        ids = query.with_entities(self.model.id).limit(None).offset(None).order_by(None).limit(threshold + 1)
        counted = select(func.count()).select_from(ids.subquery()).scalar_subquery()
        if filtered or db.session.get_bind().dialect.name != "postgresql":
            estimate, counted = None, db.session.scalar(select(counted))
        else:
            # PostgreSQL runs the capped count only when the estimate is small (or missing before ANALYZE).
            estimate = self.planner_estimate()
            estimate, counted = db.session.execute(select(
                estimate, case((func.coalesce(estimate, -1) > threshold, None), else_=counted))).one()
        if counted is None:
            g.admin_count = ("estimate", estimate)
            return estimate
        g.admin_count = ("more", threshold) if counted > threshold else ("exact", counted)
        return counted

    def planner_estimate(self) -> Any:
        """PostgreSQL's row estimate for the table, as a scalar subquery (NULL or -1 before the first ANALYZE)."""
        return (select(literal_column("reltuples").cast(BigInteger)).select_from(table("pg_class"))
                .where(literal_column("oid") == func.to_regclass(self.model.__tablename__)).scalar_subquery())

    # --- display -------------------------------------------------------------

    def record_link(self, record: Any) -> Markup | str:
        """A related record as a link to its details page in the admin (its name alone when it has no view)."""
        url = details_url(record.__tablename__, record.id)
        return Markup('<a href="{}">{}</a>').format(url, str(record)) if url else str(record)

    def json_text(self, value: Any) -> Markup | str:
        """A JSON column in one short line; a list of related records as links to them."""
        if isinstance(value, list) and value and isinstance(value[0], db.Model):
            return Markup(", ").join(self.record_link(item) for item in value)
        rendered = json.dumps(value, ensure_ascii=False, sort_keys=True)
        return rendered if len(rendered) <= 120 else rendered[:117] + "..."

    def history(self, record_id: int) -> list[AuditEvent]:
        """The latest audit rows about the record ``record_id`` of this view's table, newest first, with their actors."""
        return list(db.session.scalars(
            select(AuditEvent)
            .options(joinedload(AuditEvent.actor))
            .where(AuditEvent.object_type == self.model.__tablename__, AuditEvent.object_id == record_id)
            .order_by(AuditEvent.id.desc())
            .limit(HISTORY_LIMIT)
        ))

    @expose("/history/")
    def history_view(self):
        """A record's audit trail: a fragment the details and edit pages fetch once shown, so they don't wait for it."""
        record_id = row_id(request.args.get("id", ""))
        if record_id is None:
            abort(404)
        return self.render("admin/minion/_history.html", events=self.history(record_id))

    def inline_records(self, model: Any) -> list[tuple[str, list[Any]]]:
        """Each inline's newest records pointing at ``model``, for the details page, in one query: the lists side by
        side, the n-th newest record of each on the n-th row."""
        if not self.inlines:
            return []
        newest = [select(inline.model, func.row_number().over(order_by=inline.model.id.desc()).label("position"))
                  .where(inline.column == model.id).order_by(inline.model.id.desc()).limit(INLINE_LIMIT).cte()
                  for inline in self.inlines]
        positions = union(*(select(records.c.position) for records in newest)).subquery()
        statement = select().select_from(positions).order_by(positions.c.position)
        for inline, records in zip(self.inlines, newest):
            entity = aliased(inline.model, records)
            statement = (statement.add_columns(entity)
                         .outerjoin(entity, records.c.position == positions.c.position)
                         .options(*(joinedload(getattr(entity, name)) for name in inline.named_by)))
        rows = db.session.execute(statement).all()
        return [(inline.heading, [row[index] for row in rows if row[index] is not None])
                for index, inline in enumerate(self.inlines)]

    def filtered_list_url(self, **filters: Any) -> str:
        """This view's list with named filters applied, e.g. ``status_equals="failed"``."""
        args = {}
        for position, (arg, value) in enumerate(filters.items()):
            if arg not in self._filter_args:
                raise KeyError(f"{self.endpoint} has no filter {arg!r}")
            args[f"flt{position}_{arg}"] = value
        return url_for(f"{self.endpoint}.index_view", **args)

    # --- saving --------------------------------------------------------------

    def get_edit_form(self):
        class EditForm(super().get_edit_form()):
            lock_version = LockVersionField()

        return EditForm

    def snapshot(self, model: Any) -> dict[str, Any]:
        state = inspect(model)
        values = {attr.key: attr.value for attr in state.attrs if attr.key in state.mapper.column_attrs}
        for name in self.audited_collections:
            values[name] = sorted(str(member) for member in getattr(model, name))
        return values

    def audit_changes(self, before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
        """Each field whose value differs, as [old, new] (a created or deleted row's side is None)."""
        keys = (before.keys() | after.keys()) - set(MAINTAINED_COLUMNS)
        return {key: [before.get(key), after.get(key)] for key in sorted(keys) if before.get(key) != after.get(key)}

    def create_model(self, form):
        model = self.build_new_instance()
        try:
            form.populate_obj(model)
            db.session.add(model)
            self._on_model_change(form, model, True)
            db.session.flush()
            record("admin.create", model, self.audit_changes({}, self.snapshot(model)))
            db.session.commit()
        except Exception as error:
            self.save_failed(error, CONFLICT_MESSAGE)
            return False
        self.after_model_change(form, model, True)
        return model

    def update_model(self, form, model) -> bool:
        if form.lock_version.data != model.lock_version:
            flash(STALE_MESSAGE, "error")
            return False
        before = self.snapshot(model)
        try:
            form.populate_obj(model)
            self._on_model_change(form, model, False)
            db.session.flush()
            changes = self.audit_changes(before, self.snapshot(model))
            if changes:
                record("admin.update", model, changes)
            db.session.commit()
        except Exception as error:
            self.save_failed(error, CONFLICT_MESSAGE)
            return False
        self.after_model_change(form, model, False)
        return True

    def delete_model(self, model) -> bool:
        try:
            self.on_model_delete(model)
            record("admin.delete", model, self.audit_changes(self.snapshot(model), {}))
            db.session.delete(model)
            db.session.commit()
        except Exception as error:
            self.save_failed(error, DEPENDANTS_MESSAGE)
            return False
        self.after_model_delete(model)
        return True

    def save_failed(self, error: Exception, integrity_message: str) -> None:
        """Roll back and tell the admin in plain words; never the database's own error text."""
        db.session.rollback()
        if isinstance(error, StaleDataError):
            flash(STALE_MESSAGE, "error")
        elif isinstance(error, IntegrityError):
            flash(integrity_message, "error")
        elif isinstance(error, ValueError):
            flash(f"{SAVE_FAILED_MESSAGE} ({error})", "error")
        else:
            log.exception("admin save failed")
            flash(SAVE_FAILED_MESSAGE, "error")

    def run_bulk(self, ids: list[str], change: Callable[[Any], bool], done: str) -> None:
        """Apply ``change`` (which audits what it does; False when the row needed nothing) in one transaction."""
        keys = [key for key in map(row_id, ids) if key is not None]
        rows = self.get_query().filter(self.model.id.in_(keys)).all()
        try:
            changed = sum(1 for row in rows if change(row))
            db.session.commit()
        except Exception as error:
            self.save_failed(error, CONFLICT_MESSAGE)
            return
        flash(done.format(count=changed, skipped=len(rows) - changed), "success")

    # --- export --------------------------------------------------------------

    def get_export_value(self, model: Any, name: Any) -> Any:
        return spreadsheet_safe(super().get_export_value(model, name))

    @expose("/export/<export_type>/")
    def export(self, export_type: str):
        """CSV streamed row by row from a server-side cursor; the table is never loaded whole."""
        if not self.can_export or export_type != "csv":
            flash("This list cannot be exported.", "error")
            return redirect(get_redirect_target() or self.get_url(".index_view"))
        view_args = self._get_list_extra_args()
        sort = self._get_column_by_idx(view_args.sort)
        _, query = ModelView.get_list(self, None, sort[0] if sort else None, view_args.sort_desc,
                                      view_args.search, view_args.filters, execute=False, page_size=0)
        columns = self._export_columns

        class Line:
            def write(self, value: str) -> str:
                return value

        writer = csv.writer(Line())

        def lines() -> Iterator[str]:
            yield writer.writerow([label for _, label in columns])
            for row in query.yield_per(EXPORT_BATCH):
                yield writer.writerow([self.get_export_value(row, name) for name, _ in columns])

        filename = f"{self.model.__tablename__}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}.csv"
        return Response(stream_with_context(lines()), mimetype="text/csv",
                        headers={"Content-Disposition": f"attachment; filename={filename}"})
