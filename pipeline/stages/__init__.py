"""Built-in stages. Each module registers its stages when imported.

Adding a stage: write its method as a plain function in a method package, then a module here (or a
plugin module named in ``PIPELINE_PLUGINS``) that declares its Params dataclass and registers a
:class:`pipeline.registry.Stage`; add the module to :data:`STAGE_MODULES`.
"""

import importlib

from pipeline.registry import StageLoadError

# Order is only the listing order of `python -m pipeline stages`.
STAGE_MODULES = ("core", "detect", "gradsal", "features", "arn", "promote", "ldps", "retrieval", "alignment", "relearn")

for _name in STAGE_MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ImportError as exc:  # a broken installation: say which stage module and why
        raise StageLoadError(f"built-in stage module pipeline.stages.{_name} cannot be imported ({exc})") from exc
