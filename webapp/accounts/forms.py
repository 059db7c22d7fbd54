from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp, ValidationError

from webapp.accounts.passwords import password_problem
from webapp.quotas import METERED_QUOTAS, QUOTA_LABELS
from webapp.times import zone_names


class SignInForm(FlaskForm):
    # No address-format check: sign-in only compares with what exists.
    email = StringField("Email", validators=[DataRequired(), Length(max=255)], render_kw={"type": "email"})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    remember = BooleanField("Keep me signed in on this device")


class PasswordRequestForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=255)], render_kw={"type": "email"})


def acceptable_password(form, field) -> None:
    problem = password_problem(field.data or "")
    if problem:
        raise ValidationError(problem)


class NewPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), Length(max=1024), acceptable_password])
    confirm = PasswordField(
        "Repeat the new password", validators=[DataRequired(), EqualTo("password", "The two passwords differ.")]
    )


class PasswordChangeForm(NewPasswordForm):
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])


class ProfileForm(FlaskForm):
    display_name = StringField("Name", validators=[DataRequired(), Length(max=120)])
    time_zone = SelectField("Time zone", description="Times in the console are shown in this zone.")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.time_zone.choices = [(name, name.replace("_", " ")) for name in zone_names()]


class EmailChangeForm(FlaskForm):
    email = StringField("New email address", validators=[
        DataRequired(), Length(max=255), Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Enter an email address.")],
        render_kw={"type": "email"})
    current_password = PasswordField("Current password", validators=[DataRequired(), Length(max=1024)])


class UsageAlertsForm(FlaskForm):
    """One checkbox per metered quota: ticked, its 50%, 80% and 100% crossings are mailed and shown."""

    def __init__(self, *args, muted: list[str] | None = None, **kwargs) -> None:
        if muted is not None:
            kwargs["data"] = {key: key not in muted for key in METERED_QUOTAS}
        super().__init__(*args, **kwargs)

    def muted(self) -> list[str]:
        return [key for key in METERED_QUOTAS if not self[key].data]


for _key in METERED_QUOTAS:
    setattr(UsageAlertsForm, _key, BooleanField(QUOTA_LABELS[_key]))
