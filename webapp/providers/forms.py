from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, StringField, ValidationError
from wtforms.validators import DataRequired, Length

from webapp.providers.services import normalise_base_url


class ApiKeyForm(FlaskForm):
    """Write-only: the key is never rendered back into the page."""

    api_key = PasswordField(
        "API key",
        validators=[DataRequired("Paste the API key."), Length(min=8, max=1000, message="That does not look like an API key.")],
        filters=[lambda value: value.strip() if value else value],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )


class ProviderSettingsForm(FlaskForm):
    base_url = StringField(
        "Base URL override",
        filters=[lambda value: value.strip() if value else value],
        render_kw={"type": "url", "inputmode": "url", "spellcheck": "false"},
    )
    is_enabled = BooleanField("Use this provider")

    def validate_base_url(self, field) -> None:
        try:
            normalise_base_url(field.data)
        except ValueError as error:
            raise ValidationError(str(error)) from None
