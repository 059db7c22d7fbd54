from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField
from wtforms.validators import DataRequired, Length


class SignInForm(FlaskForm):
    # No address-format check: sign-in only compares with what exists.
    email = StringField("Email", validators=[DataRequired(), Length(max=255)], render_kw={"type": "email"})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])
    remember = BooleanField("Keep me signed in on this device")
