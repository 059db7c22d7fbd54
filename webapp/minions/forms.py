from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import URL, DataRequired, Length, Optional, ValidationError


def single_spaced(value):
    """A name as one line: runs of white space become one space, control characters (NUL...) go."""
    return " ".join("".join(ch for ch in value if ch.isprintable() or ch.isspace()).split()) if value else value


def blank_to_none(value):
    return value.strip() or None if isinstance(value, str) else value


def https_only(form, field) -> None:
    if field.data and not field.data.lower().startswith("https://"):
        raise ValidationError("Use an https:// address of an image.")


class MinionEditForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=120)], filters=[single_spaced])
    avatar_url = StringField(
        "Avatar image URL (optional)", filters=[blank_to_none],
        validators=[Optional(), Length(max=500), URL(message="Enter a full image address."), https_only],
        render_kw={"type": "url", "inputmode": "url"},
    )


class MinionCreateForm(MinionEditForm):
    model_id = SelectField("Base model", coerce=int, validate_choice=True,
                           validators=[DataRequired("Choose a base model.")])

    def set_models(self, models) -> None:
        self.model_id.choices = [SelectChoice(model.id, f"{model.name} ({model.model_type})") for model in models]
