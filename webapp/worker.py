"""The Celery app of a worker or beat process: ``celery -A webapp.worker worker -B``."""
from webapp import create_app

flask_app = create_app()
celery = flask_app.extensions["celery"]
