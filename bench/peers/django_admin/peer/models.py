"""The console's tables as unmanaged Django models: Django reads them and never migrates them."""
from django.db import models


def choices(*values: str) -> list[tuple[str, str]]:
    """Field choices, so that list_filter offers fixed values instead of a SELECT DISTINCT on every page."""
    return [(value, value.replace("_", " ").capitalize()) for value in values]


class User(models.Model):
    email = models.CharField(max_length=255)
    display_name = models.CharField(max_length=120)
    is_active = models.BooleanField()
    email_verified_at = models.DateTimeField(null=True)
    last_login_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "users"

    def __str__(self):
        return self.email


class Minion(models.Model):
    owner_user = models.ForeignKey(User, models.DO_NOTHING)
    name = models.CharField(max_length=255)
    xp = models.IntegerField()
    level = models.IntegerField()
    status = models.CharField(max_length=32)

    class Meta:
        managed = False
        db_table = "minions"

    def __str__(self):
        return self.name


class UsageRecord(models.Model):
    user = models.ForeignKey(User, models.DO_NOTHING)
    metric = models.CharField(max_length=32, choices=choices("input_tokens", "output_tokens", "requests", "training_minutes"))
    quantity = models.BigIntegerField()
    occurred_at = models.DateTimeField()
    event_id = models.CharField(max_length=255)

    class Meta:
        managed = False
        db_table = "usage_records"


class Payment(models.Model):
    user = models.ForeignKey(User, models.DO_NOTHING)
    amount_cents = models.IntegerField()
    refunded_cents = models.IntegerField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32, choices=choices("pending", "succeeded", "failed", "refunded"))
    provider = models.CharField(max_length=32)
    provider_ref = models.CharField(max_length=255, null=True)
    description = models.CharField(max_length=255)
    paid_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "payments"


class TrainingJob(models.Model):
    user = models.ForeignKey(User, models.DO_NOTHING)
    minion = models.ForeignKey(Minion, models.DO_NOTHING, null=True)
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=32, choices=choices("queued", "running", "succeeded", "failed", "canceled"))
    job_type = models.CharField(max_length=32)
    progress = models.FloatField()
    external_job_id = models.CharField(max_length=255, null=True)
    queued_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = "training_jobs"
