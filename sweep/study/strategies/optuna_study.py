"""Optuna: a study per (base configuration, environment, protocol, threshold), maximising the speed-up
with ``score_loss - max_loss ≤ 0`` as a constraint (multivariate TPE; each trial's
constraint is set with ``Trial.set_constraint``, which replaced ``constraints_func`` in Optuna 5).

The study lives in the same database URL as sweep's tables, so ``optuna-dashboard URL`` and the ``optuna``
command line read it. Settings already stored (by a grid, another strategy or an earlier run) are *told*
to the study as trials with those parameters instead of being measured again.

Where the speed model predicts the settings' speed-ups (``Problem.predicted``), the first trials are enqueued from
those predictions instead of TPE's random start-up (``Study.enqueue_trial``): a prior, never an outcome.

Search space: per accelerator, ``<name>`` (on/off, when the space has both) and, for each parameter with
more than one value in the space, ``<name>.<param>#`` (an ordered parameter: the index of its value in the
grid's values, so TPE models neighbours) or ``<name>.<param>`` (categorical). Each trial's user attributes
``setting`` and ``setting_key`` name the accelerated setting in full. A space that
never combines accelerators gets one ``method`` choice instead of on/off switches.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING

from search_space import defaults
from search_space.setting import AccelSetting, ParamValue
from sweep.accelerators import describe
from sweep.study.strategies.base import Evaluations, Outcome, Problem, Strategy, fmt_outcome

if TYPE_CHECKING:
    import optuna

OFF = "off"


class _Space:
    def __init__(self, settings: tuple[AccelSetting, ...]) -> None:
        values: dict[str, dict[str, set[ParamValue]]] = {}
        self.optional: set[str] = set()
        for s in settings:
            for name, params in s:
                for k, v in params.items():
                    values.setdefault(name, {}).setdefault(k, set()).add(v)
        self.accels = sorted(values)
        for name in self.accels:
            if any(name not in dict(s) for s in settings):
                self.optional.add(name)
        self.combined = any(len(s.methods) > 1 for s in settings)
        self.varying = {a: {k: sorted(v) for k, v in ps.items() if len(v) > 1} for a, ps in values.items()}  # type: ignore[type-var]
        self.fixed = {a: {k: next(iter(v)) for k, v in ps.items() if len(v) == 1} for a, ps in values.items()}

    def sample(self, trial: optuna.trial.BaseTrial) -> AccelSetting:
        """Every parameter is suggested in every trial (a static space, which multivariate TPE models jointly); the
        parameters of an accelerator switched off are ignored."""
        if self.combined:
            on = [a for a in self.accels if a not in self.optional or trial.suggest_categorical(a, [OFF, "on"]) == "on"]
        else:
            on = [str(trial.suggest_categorical("method", self.accels))]
        parts: dict[str, dict[str, ParamValue]] = {}
        for a in self.accels:
            params = dict(self.fixed[a])
            for k, choices in self.varying[a].items():
                if self._ordered(a, k):  # an index along the aggressiveness order, so TPE sees neighbours
                    params[k] = choices[trial.suggest_int(f"{a}.{k}#", 0, len(choices) - 1)]
                else:
                    params[k] = trial.suggest_categorical(f"{a}.{k}", choices)
            if a in on:
                parts[a] = params
        return AccelSetting.of(parts)

    def params(self, setting: AccelSetting) -> dict[str, object]:
        """The study parameters that sample ``setting`` (for enqueueing a stored trial)."""
        methods: Mapping[str, Mapping[str, ParamValue]] = dict(setting)
        out: dict[str, object] = {}
        if self.combined:
            out.update({a: ("on" if a in methods else OFF) for a in self.optional})
        else:
            out["method"] = next(iter(methods))
        for a, params in methods.items():
            for k, choices in self.varying[a].items():
                if self._ordered(a, k):
                    out[f"{a}.{k}#"] = choices.index(params[k])
                else:
                    out[f"{a}.{k}"] = params[k]
        return out

    @staticmethod
    def _ordered(accel: str, param: str) -> bool:
        from sweep.accelerators import ACCELERATORS

        return ACCELERATORS[accel].param(param).aggressive != 0 and ACCELERATORS[accel].param(param).kind is not bool


class OptunaSearch(Strategy):
    name = "optuna"

    def __init__(
        self, *, storage: object = None, study_name: str = "sweep", patience: int = defaults.PATIENCE, startup: int = 8,
    ) -> None:
        self.storage = storage
        self.study_name = study_name
        self.patience = patience
        self.startup = startup

    def _study(self, evals: Evaluations) -> optuna.Study:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        max_loss = evals.problem.max_loss
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=evals.problem.seed, n_startup_trials=self.startup, multivariate=True)
        study = optuna.create_study(
            storage=self.storage, sampler=sampler, study_name=self.study_name, direction="maximize",
            load_if_exists=True,
        )
        study.set_user_attr("max_loss", max_loss)
        study.set_user_attr("base_config", evals.problem.label)
        return study

    @staticmethod
    def _tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome, problem: Problem) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr("setting_key", outcome.setting.key)
        trial.set_user_attr("setting", describe(outcome.setting))
        trial.set_user_attr("stored", outcome.stored)
        if outcome.status == "done" and outcome.speedup is not None:
            if problem.quality_known:
                loss = outcome.score_loss if outcome.score_loss is not None else 1.0
                trial.set_user_attr("score_loss", loss)
                trial.set_constraint("score_loss", loss - problem.max_loss)  # feasible when ≤ 0
            else:  # speed only: every measured setting is feasible, the search looks for the fastest
                trial.set_constraint("score_loss", 0.0)
            study.tell(trial, outcome.speedup)
        else:
            trial.set_user_attr("failed", True)
            study.tell(trial, state=TrialState.FAIL)

    def _evaluate(self, study: optuna.Study, trial: optuna.Trial, evals: Evaluations, setting: AccelSetting) -> None:
        from optuna.trial import TrialState

        try:
            outcome = evals(setting)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)  # budget reached or interrupted: no dangling RUNNING trial
            raise
        self._tell(study, trial, outcome, evals.problem)

    def _priors(self, evals: Evaluations) -> list[AccelSetting]:
        """Settings to try before TPE models anything, from the speed model's predictions: speed only, the fastest
        predicted; with quality, where the fastest are likely over the threshold, settings spread evenly over the
        predicted speed-ups' ranks (TPE's random start-up does the same blindly)."""
        fresh = [s for s in evals.problem.by_prediction(evals.problem.settings) if s not in evals]
        room = max(0, self.startup - evals.count)  # TPE's random start-up left: its trials told so far count
        if not fresh or not room:
            return []
        if not evals.problem.quality_known or room >= len(fresh):
            return fresh[:room]
        step = (len(fresh) - 1) / max(1, room - 1)
        return list(dict.fromkeys(fresh[round(i * step)] for i in range(room)))

    def run(self, evals: Evaluations) -> str:
        from optuna.trial import TrialState

        space = _Space(evals.problem.settings)
        study = self._study(evals)
        # 1. what this study already holds (an earlier or interrupted run): counted, not re-measured
        told = {t.user_attrs.get("setting_key") for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        for key in sorted(k for k in told if isinstance(k, str)):
            setting = AccelSetting.from_key(key)
            if evals.in_space(setting):
                evals(setting)
        # 2. stored trials the study has not seen: told with their parameters
        stored_told = 0
        for setting in evals.problem.settings:
            if setting.key in told or not evals.is_stored(setting):
                continue
            study.enqueue_trial(space.params(setting), skip_if_exists=False)
            trial = study.ask()
            sampled = space.sample(trial)
            assert sampled == setting, (sampled.key, setting.key)
            self._evaluate(study, trial, evals, setting)
            stored_told += 1
        resumed = evals.count
        # 3. the speed model's priors: the first trials the sampler would have drawn at random
        priors = self._priors(evals)
        for setting in priors:
            study.enqueue_trial(space.params(setting), skip_if_exists=True)
        # 4. ask, measure (or read back), tell
        since_gain, repeats = 0, 0
        best = evals.best()
        stop = "every setting evaluated"
        while not evals.exhausted:
            trial = study.ask()
            setting = space.sample(trial)
            if not evals.in_space(setting):
                trial.set_user_attr("outside_space", describe(setting))
                study.tell(trial, state=TrialState.FAIL)
                repeats += 1
            else:
                fresh = setting not in evals
                self._evaluate(study, trial, evals, setting)
                if fresh:
                    repeats = 0
                    now = evals.best()
                    if now is not None and (best is None or (now.speedup or 0) > (best.speedup or 0)):
                        best, since_gain = now, 0
                    else:
                        since_gain += 1
                else:
                    repeats += 1
            if since_gain >= self.patience:
                stop = f"no better setting in the last {self.patience} new trials"
                break
            if repeats >= 10 * len(evals.problem.settings):
                stop = "the sampler keeps proposing evaluated settings"
                break
        evals.log.append(
            f"optuna TPE (seed {evals.problem.seed}, study {self.study_name!r}): "
            f"{resumed - stored_told} from the study, {stored_told} stored trial(s) told, "
            f"{evals.count - resumed} sampled ({len(priors)} enqueued from the speed model's predictions); {stop}; best "
            + (fmt_outcome(best, evals.problem.max_loss) if best else "none within the threshold")
        )
        return "complete"
