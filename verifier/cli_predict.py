"""``predict`` and ``certify`` subcommands: the fallback policy (defenses/fallback.py) at the command line.

predict: one prediction per row of ``--data``. ``--defense auto`` (default) uses a verified model as is
(verified = its transcript audits and every step was checked, verifier/model_trust.py) and sends any
other through randomized smoothing (classifiers: label + certified radius, or ABSTAIN) or oblivious mitigation (regression: the mitigated value; needs ``--clean-data``).
certify: certified accuracy of the smoothed classifier on labelled data, a table and optionally a PNG.

Output: a short summary on stderr always; ``--json`` a JSON document on stdout; ``--out`` writes the rows
atomically as CSV (JSON when the name ends with .json); with neither, the CSV goes to stdout.
Exit codes: 0 success, 1 oblivious mitigation refused the model (the clean data cannot vouch for the sampling
body, the model is too inaccurate on it, or the guarantee would be vacuous), 2 usage or input error (raised as
InputError / CliError and reported by verifier/cli.py).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import replace

import numpy as np

from protocol import model_file
from protocol.csv_reader import ReadOptions, split_names
from protocol.dataset import class_indices, load_table, numeric_target, table_header
from protocol.errors import InputError
from protocol.fileio import ensure_parent, write_atomic

EXIT_OK, EXIT_REFUSED = 0, 1
DEFENSES = ("auto", "none", "smoothing", "oblivious")  # = defenses.fallback.DEFENSES (imported lazily: scipy)
ABSTAIN_TEXT = "ABSTAIN"
DEFAULT_RADII = "0,0.25,0.5,0.75,1,1.5,2,3"


def add_parsers(sub) -> None:
    p = sub.add_parser("predict", help="predict with a model file; unverified models go through a defense")
    p.add_argument("--model", required=True, help="model JSON written by `vtrain-verifier train`")
    p.add_argument("--data", required=True, help="PATH.csv or builtin:NAME with the model's feature columns "
                   "(the target column, if present, is ignored)")
    p.add_argument("--target", help="target column name (default: the model's); used in --data and --clean-data")
    p.add_argument("--defense", choices=DEFENSES, default="auto",
                   help="auto (default): verified -> none, else smoothing (classifier) / oblivious (regression)")
    p.add_argument("--transcript", help="the model's transcript (default: the path the model file records); a "
                   "model counts as verified only if its transcript audits and every step was checked")
    _smoothing_args(p, sigma_help="smoothing noise in standardized units (default %(default)s)")
    p.add_argument("--clean-data", help="labelled clean CSV (or builtin:NAME); required by oblivious "
                   "mitigation (default: none)")
    p.add_argument("--eps", type=float, help="oblivious: a clean row counts as an error when |model - label| > "
                   "EPS (target units; default: the target's standard deviation)")
    p.add_argument("--lines", type=int, default=15, help="oblivious: random lines per row (default %(default)s)")
    p.add_argument("--body", choices=("box", "ball"), default="box",
                   help="oblivious: sampling body from the clean data (default %(default)s)")
    p.add_argument("--grid", type=float, help="oblivious: round outputs canonically to this step (target units; "
                   "default: no rounding)")
    p.add_argument("--max-failure", type=float, default=0.01, help="oblivious: refuse unless each mitigated row is "
                   "within its error bound except with at most this probability (default %(default)s)")
    p.add_argument("--coverage-alpha", type=float, default=0.01, help="oblivious: level of the test that the clean "
                   "rows are a uniform sample of the sampling body (default %(default)s)")
    p.add_argument("--candidates", type=int, default=4, help="oblivious: nodes drawn per line; the two with the "
                   "smallest error amplification are queried (default %(default)s; 2 = no choice)")
    p.add_argument("--out", help="write the rows here: CSV, or JSON when the name ends with .json (missing "
                   "folders are created; default: CSV on stdout)")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    _table_args(p)

    c = sub.add_parser("certify", help="certified accuracy of the smoothed classifier on labelled data")
    c.add_argument("--model", required=True, help="model JSON of a logistic model")
    c.add_argument("--data", required=True, help="labelled PATH.csv or builtin:NAME")
    c.add_argument("--target", help="label column (default: the model's target)")
    _smoothing_args(c, sigma_help="noise level(s) in standardized units, comma-separated (default %(default)s)",
                    sigma_type=str)
    c.add_argument("--transcript", help="the model's transcript (default: the path the model file records); the "
                   "plot and JSON call the model verified only if its transcript audits and every step was checked")
    c.add_argument("--radii", default=DEFAULT_RADII, help="radii of the table, comma-separated (default %(default)s)")
    c.add_argument("--plot", help="write a PNG of certified accuracy vs radius (missing folders are created; default: no plot)")
    c.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    _table_args(c)


def _table_args(p) -> None:
    from .cli import add_table_args

    add_table_args(p, select=False)
    p.add_argument("--drop", help="comma-separated columns of --data to ignore, columns the model does not know "
                   "(default: none)")


def _smoothing_args(p, sigma_help: str, sigma_type=float) -> None:
    p.add_argument("--sigma", type=sigma_type, default=0.25 if sigma_type is float else "0.25", help=sigma_help)
    p.add_argument("--n0", type=int, default=100, help="CERTIFY selection draws (default %(default)s)")
    p.add_argument("--n", type=int, default=1000, help="CERTIFY estimation draws (default %(default)s)")
    p.add_argument("--alpha", type=float, default=0.001, help="failure probability per row (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=10_000, help="noisy rows per model call (default %(default)s)")
    p.add_argument("--seed", type=int, help="integer seed for the defenses' randomness (default: fresh)")


def dispatch(args) -> int:
    if args.command == "predict":
        return cmd_predict(args)
    if args.command == "certify":
        return cmd_certify(args)
    raise InputError(f"unknown command {args.command!r}")


# ---------------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------------

def cmd_predict(args) -> int:
    from defenses.fallback import FallbackOptions, MitigationRefused, choose_defense, run_defense

    options = FallbackOptions(sigma=args.sigma, n0=args.n0, n=args.n, alpha=args.alpha, batch_size=args.batch_size,
                              n_lines=args.lines, eps=args.eps, body=args.body, grid=args.grid,
                              max_failure=args.max_failure, coverage_alpha=args.coverage_alpha,
                              candidates=args.candidates,
                              seed=args.seed).validated()
    model = model_file.load(args.model)
    if args.out:
        ensure_parent(args.out)  # refused before the defense runs, not after
    target = args.target or model.target
    from .model_trust import assess

    trust = assess(model, args.model, args.transcript)
    decision = choose_defense(model, args.defense, trust)
    X = feature_matrix(args.data, model, target, args)
    clean = None
    if args.clean_data:
        clean = labelled_rows(args.clean_data, model, target, args)
    info = {"command": "predict", "model": args.model, "model_kind": model.kind, "data": args.data,
            "verification": {"status": "verified" if trust.verified else "unverified", "check": trust.check,
                             "reason": trust.reason},
            "defense": decision.defense, "reason": decision.reason}
    print(f"defense: {decision.defense} -- {decision.reason}", file=sys.stderr)
    bar = _ProgressBar(X.shape[0], enabled=decision.defense != "none" and not args.json, desc=decision.defense)
    try:
        result = run_defense(model, X, decision, options, clean, progress=bar.update)
    except MitigationRefused as e:
        return _oblivious_refused(info, e, options, args.json)
    finally:
        bar.close()
    rows = _rows(result, model)
    summary = _summary(result)
    if args.out:
        try:
            write_atomic(args.out, _json_text(rows) if args.out.lower().endswith(".json") else _csv_text(rows))
        except OSError as e:
            raise InputError(f"cannot write --out {args.out}: {e.strerror or e}") from None
    doc = {**info, "status": "ok", "parameters": _parameters(decision.defense, options, result),
           "summary": summary, "out": args.out, "rows": rows}
    if args.json:
        print(json.dumps(doc, indent=1, sort_keys=True))
    elif not args.out:
        sys.stdout.write(_csv_text(rows))
    if decision.defense == "oblivious":
        print(_oblivious_report(result.details), file=sys.stderr)
    print(_summary_line(decision.defense, summary) + (f"; written to {args.out}" if args.out else ""), file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------------
# predict: oblivious mitigation's refusal and guarantee (kept apart from the shared paths above)
# ---------------------------------------------------------------------------------------------------

def _oblivious_refused(info: dict, e, options, as_json: bool) -> int:
    """Exit 1 with the reason and the assumption the refusal protects."""
    from defenses.fallback import OBLIVIOUS_ASSUMPTION, BodyNotCovered, ModelTooInaccurate

    refusal = {**info, "status": "refused", "error": str(e),
               "assumption": OBLIVIOUS_ASSUMPTION.format(body=options.body)}
    if isinstance(e, ModelTooInaccurate):
        refusal.update(reason_kind="model_too_inaccurate", delta_hat=e.delta_hat, delta_upper=e.upper_bound,
                       tolerated_error_rate=e.tolerance, clean_rows=e.n_samples)
    elif isinstance(e, BodyNotCovered):
        r = e.result
        refusal.update(reason_kind="clean_data_does_not_cover_body", coverage_statistic=r.worst,
                       coverage_ks=r.ks_statistic, coverage_p_value=r.p_value, coverage_alpha=r.alpha,
                       clean_rows=r.n_rows)
    else:
        refusal["reason_kind"] = "no_body"
    if as_json:
        print(json.dumps(refusal, indent=1, sort_keys=True))
    print(f"vtrain-verifier: refused: oblivious mitigation cannot serve this model: {e}", file=sys.stderr)
    print(f"({refusal['assumption']}.)", file=sys.stderr)
    return EXIT_REFUSED


def _oblivious_report(d: dict) -> str:
    """The assumption and the guarantee the fitted parameters give, in two sentences."""
    return (f"{d['assumption'][0].upper()}{d['assumption'][1:]} (eps = {d['eps']:.4g}; checked: uniformity p = "
            f"{d['coverage_p_value']:.2g} >= {d['coverage_alpha']:g} / features, model error rate {d['delta_hat']:.3f} "
            f"on {d['clean_rows']} clean rows, {d['confidence']:.0%} upper bound {d['delta_upper']:.4f}).\n"
            f"Guarantee per row: {d['n_lines']} lines x {d['points_per_line']} points ({d['decoder']}, "
            f"{d['aggregate']}); |prediction - linear truth| <= error_bound = eps x the line reconstruction's "
            f"error amplification, except with probability <= {d['failure_probability']:.2g} per row "
            f"(each line fails w.p. <= {d['line_failure_probability']:.3g}; tolerated error rate "
            f"{d['tolerated_error_rate']:.3f})")


def _model_table(spec: str, model, target: str | None, args, require_target: bool):
    """The model's feature columns of ``spec`` (by name, any order). Columns of the training table that the
    model does not use, the target and ``--drop`` columns are ignored; a missing feature column or an unknown
    extra column is refused, naming them."""
    opts = ReadOptions(delimiter=args.delimiter, drop_missing=args.drop_missing).validated()
    header = table_header(spec, opts)
    drop = split_names(args.drop) or ()
    want = model.feature_names
    known = set(model.table_columns) | set(want) | {target} | set(drop)
    missing = [n for n in want if n not in header]
    extra = [n for n in header if n not in known]
    if missing or extra:
        parts = [f"{spec}: the model expects its {len(want)} feature columns"
                 + (f" (plus optionally the target {target!r})" if target else "")]
        if missing:
            parts.append(f"missing: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
        if extra:
            parts.append(f"unexpected: {', '.join(extra[:8])}{' ...' if len(extra) > 8 else ''} (the model was "
                         f"trained without them; ignore them with --drop {','.join(extra[:8])})")
        raise InputError("; ".join(parts))
    if require_target and target not in header:
        raise InputError(f"{spec}: the label column {target!r} is missing (name it with --target)")
    if require_target and target in want:
        raise InputError(f"{spec}: the label column {target!r} is one of the model's feature columns")
    t = load_table(spec, target if require_target else None, require_target=require_target,
                   options=ReadOptions(opts.delimiter, tuple(want), (), opts.drop_missing))
    for note in t.notes:
        print(f"note: {note}", file=sys.stderr)
    return t


def feature_matrix(spec: str, model, target: str | None, args) -> np.ndarray:
    return _model_table(spec, model, target, args, require_target=False).X


def labelled_rows(spec: str, model, target: str, args) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) with y the class indices (classifiers) or the numeric target (regression)."""
    t = _model_table(spec, model, target, args, require_target=True)
    if model.is_classifier:
        return t.X, class_indices(t.y, model.labels, f"{spec}: column {target!r}")
    return t.X, numeric_target(t)


def _rows(result, model) -> list[dict]:
    """One dict per row; a classifier's answers are written as the original labels."""
    from defenses.fallback import ABSTAIN

    out = []
    smoothing = result.radius is not None
    label = model.label_of if model.is_classifier else _scalar
    for i in range(result.predictions.shape[0]):
        row: dict = {"row": i}
        if smoothing:
            lab = int(result.predictions[i])
            row["prediction"] = ABSTAIN_TEXT if lab == ABSTAIN else label(lab)
            row["radius"] = float(result.radius[i])
            row["pA_lower"] = float(result.pABar[i])
        else:
            row["prediction"] = label(result.predictions[i])
        row["model_output"] = label(result.model_output[i])
        if result.error_bound is not None:
            row["error_bound"] = float(result.error_bound[i])
        out.append(row)
    return out


def _scalar(v):
    v = np.asarray(v).item()
    return int(v) if isinstance(v, (bool, int)) else float(v)


def _summary(result) -> dict:
    pred = result.predictions
    s: dict = {"rows": int(pred.shape[0])}
    if result.radius is not None:
        ok = ~result.abstained
        s.update(certified=int(ok.sum()), abstained=int((~ok).sum()),
                 median_radius=float(np.median(result.radius[ok])) if ok.any() else 0.0,
                 changed_vs_model=int(np.sum(ok & (pred != result.model_output))))
    elif result.decision.defense == "oblivious":
        s.update(_oblivious_summary(result))
    s.update({k: v for k, v in result.details.items() if k in ("clean_accuracy_of_model", "delta_hat",
                                                              "delta_upper", "tolerated_error_rate",
                                                              "failure_probability")})
    return s


def _summary_line(defense: str, s: dict) -> str:
    line = f"{s['rows']} rows"
    if defense == "smoothing":
        # what smoothing changed against the model's own answers: abstentions and certified label flips
        line = (f"smoothing changed {s['abstained'] + s['changed_vs_model']} of {s['rows']} answers: "
                f"{s['abstained']} ABSTAIN, {s['changed_vs_model']} certified with another label than the model's; "
                f"{s['certified']} rows certified, median certified radius {s['median_radius']:.3g} (standardized L2)")
        acc = s.get("clean_accuracy_of_model")
        if acc is not None:
            line += f"; model accuracy on the clean data {acc:.3f}"
            if acc < 0.5:
                line += " (worse than chance: smoothing cannot repair a model that is wrong everywhere)"
    elif defense == "oblivious":
        line += _oblivious_summary_line(s)
    return line


def _oblivious_summary(result) -> dict:
    diff = np.abs(result.predictions - result.model_output)
    return {"max_abs_change": float(diff.max()),
            "changed_rows": int(np.sum(diff > 1e-9 * (1 + np.abs(result.predictions)))),
            "median_error_bound": float(np.median(result.error_bound)),
            "max_error_bound": float(np.max(result.error_bound))}


def _oblivious_summary_line(s: dict) -> str:
    return (f": mitigated ({s['changed_rows']} differ from the model's own answer, max change "
            f"{s['max_abs_change']:.4g}); error bound per row median {s['median_error_bound']:.4g}, max "
            f"{s['max_error_bound']:.4g} (each fails w.p. <= {s['failure_probability']:.2g}); clean error rate "
            f"{s['delta_hat']:.3f} (upper bound {s['delta_upper']:.3f} <= tolerance {s['tolerated_error_rate']:.3f})")


def _parameters(defense: str, options, result) -> dict:
    if defense == "smoothing":
        return {k: result.details[k] for k in ("sigma", "n0", "n", "alpha", "units")} | {"seed": options.seed}
    if defense == "oblivious":
        return {k: result.details[k] for k in ("degree", "n_lines", "body", "eps", "grid", "clean_rows",
                                               "confidence", "queries_per_row", "max_failure", "coverage_alpha",
                                               "decoder", "points_per_line", "candidates", "aggregate", "slack",
                                               "line_failure_probability", "failure_probability", "assumption",
                                               "coverage_p_value")} | {"seed": options.seed}
    return {}


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _json_text(rows: list[dict]) -> str:
    return json.dumps(rows, indent=1) + "\n"


# ---------------------------------------------------------------------------------------------------
# certify
# ---------------------------------------------------------------------------------------------------

def cmd_certify(args) -> int:
    from defenses.certified_accuracy import certified_accuracy_table, plot_certified_accuracy
    from defenses.fallback import ABSTAIN, FallbackOptions, certify_rows

    sigmas = _float_list(args.sigma, "--sigma", positive=True)
    radii = _float_list(args.radii, "--radii", positive=False)
    base = FallbackOptions(n0=args.n0, n=args.n, alpha=args.alpha, batch_size=args.batch_size, seed=args.seed)
    for s in sigmas:
        replace(base, sigma=s).validated()
    model = model_file.load(args.model)
    if args.plot:
        ensure_parent(args.plot)  # refused before certifying, not after
    if not model.is_classifier:
        raise InputError(f"certify needs a classifier (logistic or softmax model); {args.model} is a {model.kind} "
                         f"model")
    X, y = labelled_rows(args.data, model, args.target or model.target, args)
    rng = np.random.default_rng(args.seed)
    table, curves, per_sigma = [], {}, []
    bar = _ProgressBar(X.shape[0] * len(sigmas), enabled=not args.json, desc="certify")
    try:
        for s in sigmas:
            labels, radius, _ = certify_rows(model, X, s, replace(base, sigma=s), rng,
                                             progress=bar.update)
            curves[s] = (radius, labels, y)
            table += [{"sigma": s, **r} for r in certified_accuracy_table(labels, radius, y, radii)]
            per_sigma.append({"sigma": s, "abstained": int(np.sum(labels == ABSTAIN)),
                              "accuracy_of_smoothed": float(np.mean(labels == y))})
    finally:
        bar.close()
    # The model file's own status is never believed (verifier/model_trust.py): the plot and JSON say what
    # its transcript shows.
    from .model_trust import assess

    trust = assess(model, args.model, args.transcript)
    trust_word = "verified" if trust.verified else "unverified"
    if args.plot:
        try:
            plot_certified_accuracy(curves, args.plot, title=f"certified accuracy, {trust_word} {model.kind} model, "
                                    f"{X.shape[0]} rows (radius: standardized L2)")
        except OSError as e:
            raise InputError(f"cannot write --plot {args.plot}: {e.strerror or e}") from None
    doc = {"status": "ok", "command": "certify", "model": args.model, "data": args.data, "rows": int(X.shape[0]),
           "verification": {"verified": trust.verified, "check": trust.check, "reason": trust.reason,
                            "model_file_says": model.verification.get("status")},
           "n0": args.n0, "n": args.n, "alpha": args.alpha, "seed": args.seed,
           "units": "standardized L2 (z = (x - mean) / std)", "table": table, "per_sigma": per_sigma,
           "clean_accuracy_of_model": float(np.mean(np.asarray(model.predict(X)) == y)), "plot": args.plot}
    if args.json:
        print(json.dumps(doc, indent=1, sort_keys=True))
    else:
        print(f"{'sigma':>8} {'radius':>8} {'certified_accuracy':>19}")
        for r in table:
            print(f"{r['sigma']:8g} {r['radius']:8g} {r['certified_accuracy']:19.3f}")
    for p in per_sigma:
        print(f"sigma {p['sigma']:g}: smoothed accuracy {p['accuracy_of_smoothed']:.3f}, {p['abstained']} of "
              f"{X.shape[0]} rows ABSTAIN (radii in standardized L2 units)", file=sys.stderr)
    if args.plot:
        print(f"plot written to {args.plot}", file=sys.stderr)
    return EXIT_OK


def _float_list(text: str, flag: str, positive: bool) -> list[float]:
    try:
        vals = [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not vals or not all(np.isfinite(v) and (v > 0 if positive else v >= 0) for v in vals):
        raise InputError(f"{flag} needs finite numbers {'> 0' if positive else '>= 0'}, got {text!r}")
    return vals


def _ProgressBar(total: int, enabled: bool, desc: str):
    """Rows done by a defense: a bar on stderr only when it is a terminal (verifier/progress.py)."""
    from .progress import Bar

    return Bar(desc, total, "row", enabled and sys.stderr.isatty())
