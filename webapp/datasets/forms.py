from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import RadioField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length

from webapp.minions.forms import single_spaced

VISIBILITY_CHOICES = [SelectChoice("private", "Private: only you (and staff) can see it"),
                      SelectChoice("public", "Public: listed in the catalogue once staff approve it")]


class DatasetUploadForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)], filters=[single_spaced])
    description = TextAreaField("Description (optional)", validators=[Length(max=2000)],
                                filters=[lambda value: "".join(ch for ch in value if ch.isprintable() or ch in "\n\t")
                                         .strip() if value else ""])
    visibility = RadioField("Visibility", choices=VISIBILITY_CHOICES, default="private")
    file = FileField("File", validators=[FileRequired("Choose a file to upload.")],
                     render_kw={"accept": ".jsonl,.json,.csv"})


class CatalogueSearchForm(FlaskForm):
    class Meta:
        csrf = False

    q = StringField("Search datasets", validators=[Length(max=120)], filters=[lambda value: single_spaced(value) or ""])
