from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, EqualTo, Length, Regexp

from webapp.accounts.forms import acceptable_password
from webapp.minions.forms import single_spaced

# The address's shape only: whether it is real is what the confirmation mail finds out.
EMAIL_SHAPE = r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$"


class SignUpForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=255), Regexp(EMAIL_SHAPE, message="Enter an email address, like name@example.com.")],
                        render_kw={"type": "email"}, filters=[lambda value: value.strip() if value else value])
    display_name = StringField("Display name", validators=[DataRequired(), Length(max=120)], filters=[single_spaced])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024), acceptable_password])
    confirm = PasswordField("Repeat the password",
                            validators=[DataRequired(), EqualTo("password", "The two passwords differ.")])
