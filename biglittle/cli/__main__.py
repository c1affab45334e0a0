"""`python -m biglittle.cli …` runs the command line, as the `biglittle` script does."""
from . import app

app()
