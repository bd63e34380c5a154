"""Everything about a study that can be known without running it, checked before its first request.

``eetrend check CONFIG`` prints every problem, one line each, and exits 2 if there is any
(0 otherwise), sending no request. ``export``, ``run`` and ``download`` make the same
checks before their first request, so no study fails hours later, at fit time, for
something knowable at the start. Each line names the config key and the fix:

- the config's keys and values (all of them, not only the first, see :func:`config_problems`);
- every year against the sensors that flew in its season (the recipe);
- the fit options against the method and the composite (``trend.*``), the years there are,
  and the packages an output format or ``[dask]`` needs;
- the credentials files (read locally, never sent anywhere) and the notification secrets'
  environment variables;
- what the config loader checks too: region geometry, folders, the function file's syntax.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

from .config import Study
from .errors import ConfigError, EetrendError

#: Command-line flags of the fit and the config keys they stand for in a study.
FLAG_KEYS = {"--method": "trend.method", "--min-years": "trend.min_years", "--alpha": "trend.alpha",
             "--confidence": "trend.confidence", "--mk-test": "trend.mk_test", "--fdr-q": "trend.fdr_q",
             "--fdr": "trend.fdr", "--changepoint": "trend.changepoint", "--min-fraction": "trend.min_fraction",
             "--edge-years": "trend.edge_years", "--min-count": "trend.min_count",
             "--count-band": "composite.count_band", "--format": "trend.format"}


def study_problems(study: Study) -> list[str]:
    """Every problem of a loaded study that needs no request to find, one line each (empty: none)."""
    return _runnable_problems(study) + _credential_problems(study) + _secret_problems(study)


def _runnable_problems(study: Study) -> list[str]:
    return _sensor_problems(study) + _fit_problems(study) + _extra_problems(study)


def require_runnable(study: Study) -> None:
    """Raise :class:`ConfigError` with the first problem (and how many more) before a command's first request.

    The credentials are not read here: connecting reads them before its first request and
    says what is wrong with them in its own words (exit 1, as for credentials refused later).
    """
    problems = _runnable_problems(study)
    if problems:
        more = f" (and {len(problems) - 1} more: eetrend check {study.source})" if len(problems) > 1 else ""
        raise ConfigError(f"{study.source}: {problems[0]}{more}")


def _sensor_problems(study: Study) -> list[str]:
    composite = study.config.composite
    if composite.source != "recipe":
        return []
    from .earthengine.recipes import season_collections
    from .years import format_years

    empty = [year for year in study.years if not season_collections(study, year)]
    if not empty:
        return []
    flew = ", ".join(f"{sensor.value} ({_span(sensor)})" for sensor in composite.sensors)
    return [f"composite.sensors: none of {flew} flew in {format_years(empty)}; add a sensor that did, or leave the "
            "year(s) out with study.exclude_years"]


def _span(sensor) -> str:
    """The years a sensor's Collection 2 scenes cover, e.g. '1982-2012' or '2013-now'."""
    from .earthengine.landsat import COLLECTIONS

    spans = [c for c in COLLECTIONS if c.sensor is sensor]
    last = [c.last_year for c in spans]
    return f"{min(c.first_year for c in spans)}-{'now' if None in last else max(last)}"


def _fit_problems(study: Study) -> list[str]:
    from .engine.options import check_options

    trend, composite = study.config.trend, study.config.composite
    problems = []
    years = len(study.years) + len(study.later)
    if trend.min_years > years:
        problems.append(f"trend.min_years = {trend.min_years} is more than the study's {years} years, so every pixel "
                        f"would be NaN; lower trend.min_years or add years")
    if trend.mk_test != "original" and trend.method == "ols":
        problems.append(f"trend.mk_test = '{trend.mk_test}' changes the Mann-Kendall bands, which method = 'ols' "
                        "does not write; set trend.method = 'sen' or 'both', or remove mk_test")
    if trend.min_count > 0 and not composite.count_band:
        problems.append("trend.min_count needs the clear-scene counts: set composite.count_band = true (or, for your "
                        "own composites, the name of the count band)")
    if problems:
        return problems
    try:
        check_options(study.fit_options())
    except EetrendError as exc:
        problems.append(_as_config_keys(str(exc)))
    return problems


def _as_config_keys(message: str) -> str:
    """A fit option's message with each command-line flag written as the config key it comes from."""
    for flag in sorted(FLAG_KEYS, key=len, reverse=True):
        message = re.sub(rf"{re.escape(flag)}(?![-\w])", FLAG_KEYS[flag], message)
    return message


def _extra_problems(study: Study) -> list[str]:
    from .engine.formats import require_format

    problems = []
    try:
        require_format(study.config.trend.format)
    except EetrendError as exc:
        problems.append(f"trend.format = '{study.config.trend.format}': {exc}".replace("--format netcdf ", "")
                        .replace("--format zarr ", ""))
    dask = study.config.dask
    if dask is not None:
        needed = ["distributed"] + (["dask_jobqueue"] if dask.slurm is not None else [])
        missing = [name for name in needed if importlib.util.find_spec(name) is None]
        if missing:
            problems.append(f"dask: fitting on a Dask cluster needs {', '.join(missing)}, which is not installed; "
                            "install it with: pip install 'eetrend[dask]'")
        elif dask.slurm is not None:  # sbatch and the interface: the scheduler runs here, where eetrend does
            from .engine.dask_executor import check_slurm_host

            try:
                check_slurm_host(study.dask_settings().slurm)
            except EetrendError as exc:
                problems.append(str(exc).replace("[dask.slurm] interface", "dask.slurm.interface", 1))
    return problems


def _credential_problems(study: Study) -> list[str]:
    from .earthengine.client import credential_problem

    problem = credential_problem(study)
    return [problem] if problem else []


def _secret_problems(study: Study) -> list[str]:
    notify = study.config.notify
    if notify is None:
        return []
    names = [("notify.token_env", notify.token_env)]
    if notify.email is not None and notify.email.user:
        names.append(("notify.email.password_env", notify.email.password_env))
    return [f"{key}: the environment variable {name} is not set; set it where eetrend runs (cron and systemd do not "
            "read your shell's profile)" for key, name in names if name and not os.environ.get(name)]


def config_problems(path: str | Path) -> tuple[Study | None, list[str]]:
    """The study (None if it cannot be loaded) and every problem the loader finds, one line each."""
    from .config import load_study

    try:
        return load_study(path), []
    except ConfigError as exc:
        return None, list(getattr(exc, "problems", None) or [str(exc)])
