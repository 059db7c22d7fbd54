import click
from flask.cli import AppGroup
seed = AppGroup("seed")
