import gc

from webapp import create_app

app = create_app()
# Everything built at start-up lives as long as the process: keep it out of the
# garbage collector's generations so full collections don't rescan it per request.
gc.freeze()
