"""sqladmin over the console's tables, on Starlette, configured the way its documentation suggests.

DATABASE_URL names the benchmark database. An async engine (psycopg 3), 20 rows a page, the same
searchable columns as the console's admin, and filters with static values (sqladmin's
AllUniqueStringValuesFilter would run SELECT DISTINCT over the table on every page). No
authentication backend: the pages are served without a sign-in check.
"""
import os

from sqladmin import Admin, ModelView
from sqladmin.filters import BooleanFilter, StaticValuesFilter
from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, String
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from starlette.applications import Starlette


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(120))
    is_active: Mapped[bool]
    email_verified_at = mapped_column(DateTime(timezone=True))
    last_login_at = mapped_column(DateTime(timezone=True))
    created_at = mapped_column(DateTime(timezone=True))

    def __str__(self):
        return self.email


class Minion(Base):
    __tablename__ = "minions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))

    def __str__(self):
        return self.name


class UsageRecord(Base):
    __tablename__ = "usage_records"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    metric: Mapped[str] = mapped_column(String(32))
    quantity = mapped_column(BigInteger)
    occurred_at = mapped_column(DateTime(timezone=True))
    event_id: Mapped[str] = mapped_column(String(255))
    user: Mapped[User] = relationship()


class Payment(Base):
    __tablename__ = "payments"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    amount_cents: Mapped[int]
    refunded_cents: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32))
    provider: Mapped[str] = mapped_column(String(32))
    provider_ref = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(255))
    paid_at = mapped_column(DateTime(timezone=True))
    user: Mapped[User] = relationship()


class TrainingJob(Base):
    __tablename__ = "training_jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    minion_id = mapped_column(ForeignKey("minions.id"))
    name: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32))
    job_type: Mapped[str] = mapped_column(String(32))
    progress = mapped_column(Float)
    external_job_id = mapped_column(String(255))
    queued_at = mapped_column(DateTime(timezone=True))
    finished_at = mapped_column(DateTime(timezone=True))
    user: Mapped[User] = relationship()
    minion: Mapped[Minion | None] = relationship()


def choices(*values: str) -> list[tuple[str, str]]:
    return [(value, value.replace("_", " ").capitalize()) for value in values]


class UserAdmin(ModelView, model=User):
    page_size = 20
    column_list = [User.id, User.email, User.display_name, User.is_active, User.email_verified_at,
                   User.last_login_at, User.created_at]
    column_searchable_list = [User.email, User.display_name]
    column_filters = [BooleanFilter(User.is_active)]
    column_default_sort = (User.id, True)


class UsageRecordAdmin(ModelView, model=UsageRecord):
    page_size = 20
    column_list = [UsageRecord.id, UsageRecord.user, UsageRecord.metric, UsageRecord.quantity,
                   UsageRecord.occurred_at, UsageRecord.event_id]
    column_searchable_list = ["user.email", UsageRecord.event_id]
    column_filters = [StaticValuesFilter(UsageRecord.metric, choices("input_tokens", "output_tokens", "requests", "training_minutes"))]
    column_default_sort = (UsageRecord.id, True)


class PaymentAdmin(ModelView, model=Payment):
    page_size = 20
    column_list = [Payment.id, Payment.user, Payment.amount_cents, Payment.refunded_cents, Payment.currency,
                   Payment.status, Payment.provider, Payment.paid_at]
    column_searchable_list = ["user.email", Payment.provider_ref, Payment.description]
    column_filters = [StaticValuesFilter(Payment.status, choices("pending", "succeeded", "failed", "refunded"))]
    column_default_sort = (Payment.id, True)


class TrainingJobAdmin(ModelView, model=TrainingJob):
    page_size = 20
    column_list = [TrainingJob.id, TrainingJob.name, TrainingJob.user, TrainingJob.status, TrainingJob.job_type,
                   TrainingJob.minion, TrainingJob.progress, TrainingJob.queued_at, TrainingJob.finished_at]
    column_searchable_list = [TrainingJob.name, "user.email", TrainingJob.external_job_id]
    column_filters = [StaticValuesFilter(TrainingJob.status, choices(
        "queued", "running", "succeeded", "failed", "canceled"))]
    column_default_sort = (TrainingJob.id, True)


engine = create_async_engine(os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1),
                             pool_size=5)
app = Starlette()
admin = Admin(app, engine)
for view in (UserAdmin, UsageRecordAdmin, PaymentAdmin, TrainingJobAdmin):
    admin.add_view(view)
