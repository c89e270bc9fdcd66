"""Built-in stages. Each module registers its stages when imported."""

import importlib

# Order is only the listing order of `python -m pipeline stages`.
STAGE_MODULES = ("core", "priors_u2netp", "gradsal", "retrieval", "alignment")

for _name in STAGE_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a stage module not written yet in this checkout
        if exc.name != f"{__name__}.{_name}":
            raise
