"""Pure-numpy predictors that rebuild a model's probabilities from the numbers in a model file.

Supported classifiers, reproduced exactly from the project's pipeline (StandardScaler followed
by the classifier): logistic regression (multinomial softmax; binary models use the logistic
function of their single logit), random forest (every tree's nodes) and SVM (support vectors,
dual coefficients, intercepts, kernel settings; probabilities as the app computes them, a softmax
of one-vs-rest decision values, or libsvm's Platt sigmoids with pairwise coupling for a
scikit-learn ``SVC(probability=True)``).

:func:`model_arrays` turns a fitted model into those numbers and :data:`PREDICTORS` turns them back
into probabilities; the two sides agree on the array names listed in :data:`REQUIRED_ARRAYS`, so a
change to one kind of model touches only this module.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from inspector.core.modelfile.container import ModelFileError

# --------------------------------------------------------------------------- predictors (pure numpy)


def _scale(X: np.ndarray, arrays: dict) -> np.ndarray:
    # Same operations, same float32 rounding as scikit-learn's StandardScaler on float32 features.
    scaled = np.array(X, dtype=np.float32, copy=True)
    scaled -= arrays["scaler_mean"].astype(np.float32)
    scaled /= arrays["scaler_scale"].astype(np.float32)
    return scaled


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _logistic_proba(X: np.ndarray, arrays: dict, spec: dict) -> np.ndarray:
    z = _scale(X, arrays).astype(np.float64) @ arrays["coef"].T + arrays["intercept"]
    if z.shape[1] == 1:  # binary: one logit for the second class; p = logistic(z)
        p = 1.0 / (1.0 + np.exp(-z[:, 0]))
        return np.stack([1.0 - p, p], axis=1)
    return _softmax(z)


def _forest_proba(X: np.ndarray, arrays: dict, spec: dict) -> np.ndarray:
    Xs = _scale(X, arrays)
    offsets = arrays["tree_offsets"]
    left, right = arrays["children_left"], arrays["children_right"]
    feature, threshold, value = arrays["feature"], arrays["threshold"], arrays["value"]
    n_trees = len(offsets) - 1
    total = np.zeros((Xs.shape[0], value.shape[1]), dtype=np.float64)
    rows = np.arange(Xs.shape[0])
    for t in range(n_trees):
        base = int(offsets[t])
        node = np.zeros(Xs.shape[0], dtype=np.int64)
        active = left[base + node] != -1
        while active.any():
            at = base + node[active]
            go_left = Xs[rows[active], feature[at]].astype(np.float64) <= threshold[at]
            node[active] = np.where(go_left, left[at], right[at])
            active = left[base + node] != -1
        leaf = value[base + node]
        sums = leaf.sum(axis=1, keepdims=True)
        sums[sums == 0.0] = 1.0
        total += leaf / sums
    return total / n_trees


def _kernel(A: np.ndarray, B: np.ndarray, spec: dict) -> np.ndarray:
    kernel, gamma = spec["kernel"], float(spec["gamma"])
    if kernel == "linear":
        return A @ B.T
    if kernel == "rbf":
        sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * (A @ B.T)
        return np.exp(-gamma * np.maximum(sq, 0.0))
    if kernel == "poly":
        return (gamma * (A @ B.T) + float(spec["coef0"])) ** int(spec["degree"])
    if kernel == "sigmoid":
        return np.tanh(gamma * (A @ B.T) + float(spec["coef0"]))
    raise ModelFileError(f"unknown SVM kernel {kernel!r} in the model file")


def _pairwise_coupling(r: np.ndarray) -> np.ndarray:
    """libsvm's multiclass_probability (Wu, Lin and Weng, method 2), vectorised over samples."""
    n, k, _ = r.shape
    Q = -r.transpose(0, 2, 1) * r  # Q[t][j] = -r[j][t] * r[t][j]
    diag = (r.transpose(0, 2, 1) ** 2).sum(axis=2) - np.einsum("nii->ni", r.transpose(0, 2, 1) ** 2)
    idx = np.arange(k)
    Q[:, idx, idx] = diag
    p = np.full((n, k), 1.0 / k)
    eps = 0.005 / k
    active = np.ones(n, bool)
    for _ in range(max(100, k)):
        Qa, pa = Q[active], p[active]
        Qp = np.einsum("ntj,nj->nt", Qa, pa)
        pQp = (pa * Qp).sum(1)
        converged = np.abs(Qp - pQp[:, None]).max(1) < eps
        still = ~converged
        where = np.flatnonzero(active)
        active[where[converged]] = False
        if not still.any():
            break
        Qa, pa, Qp, pQp = Qa[still], pa[still], Qp[still], pQp[still]
        for t in range(k):
            diff = (-Qp[:, t] + pQp) / Qa[:, t, t]
            pa[:, t] += diff
            pQp = (pQp + diff * (diff * Qa[:, t, t] + 2 * Qp[:, t])) / (1 + diff) / (1 + diff)
            Qp = (Qp + diff[:, None] * Qa[:, t, :]) / (1 + diff)[:, None]
            pa /= (1 + diff)[:, None]
        p[where[still]] = pa
    return p


def _svm_pairwise_decisions(X: np.ndarray, arrays: dict, spec: dict) -> np.ndarray:
    """libsvm's one-vs-one decision values (n, pairs), pairs ordered (0,1), (0,2) ... (1,2) ..."""
    Xs = _scale(X, arrays).astype(np.float64)
    K = _kernel(Xs, arrays["support_vectors"], spec)
    n_support = arrays["n_support"].astype(np.int64)
    start = np.concatenate([[0], np.cumsum(n_support)])
    dual, intercept = arrays["dual_coef"], arrays["intercept"]
    k = len(n_support)
    out = np.zeros((Xs.shape[0], k * (k - 1) // 2))
    pair = 0
    for i in range(k):
        for j in range(i + 1, k):
            si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
            out[:, pair] = K[:, si] @ dual[j - 1, si] + K[:, sj] @ dual[i, sj] + intercept[pair]
            pair += 1
    return out


def _svm_proba(X: np.ndarray, arrays: dict, spec: dict) -> np.ndarray:
    dec = _svm_pairwise_decisions(X, arrays, spec)
    k = len(arrays["n_support"])
    if spec.get("probabilities") == "softmax_ovr":
        # the app's SoftmaxSVC: softmax(one-vs-rest decision / temperature), where scikit-learn
        # derives one-vs-rest values from the pairwise ones (votes plus squashed confidences)
        if k == 2:
            d = np.stack([dec[:, 0], -dec[:, 0]], axis=1)
        else:
            votes = np.zeros((dec.shape[0], k))
            confidence = np.zeros((dec.shape[0], k))
            pair = 0
            for i in range(k):
                for j in range(i + 1, k):
                    confidence[:, i] += dec[:, pair]
                    confidence[:, j] -= dec[:, pair]
                    votes[dec[:, pair] >= 0, i] += 1
                    votes[dec[:, pair] < 0, j] += 1
                    pair += 1
            d = votes + confidence / (3 * (np.abs(confidence) + 1))
        return _softmax(d / float(spec["temperature"]))
    prob_a, prob_b = arrays["prob_a"], arrays["prob_b"]
    r = np.zeros((dec.shape[0], k, k))
    pair = 0
    for i in range(k):
        for j in range(i + 1, k):
            f = dec[:, pair] * prob_a[pair] + prob_b[pair]
            e = np.exp(-np.abs(f))
            sig = np.clip(np.where(f >= 0, e / (1.0 + e), 1.0 / (1.0 + e)), 1e-7, 1 - 1e-7)
            r[:, i, j], r[:, j, i] = sig, 1.0 - sig
            pair += 1
    # scikit-learn's libsvm couples even two classes iteratively (its answer differs from the
    # pairwise sigmoid by up to the coupling tolerance), so do the same to match it exactly
    return _pairwise_coupling(r)


#: kind -> f(X, arrays, spec) returning probabilities over the model's own classes
PREDICTORS: dict[str, Callable[[np.ndarray, dict, dict], np.ndarray]] = {
    "logistic": _logistic_proba,
    "forest": _forest_proba,
    "svm": _svm_proba,
}
#: the arrays each kind of model needs in the file
REQUIRED_ARRAYS = {
    "logistic": ("scaler_mean", "scaler_scale", "coef", "intercept", "columns"),
    "forest": ("scaler_mean", "scaler_scale", "tree_offsets", "children_left", "children_right", "feature",
               "threshold", "value", "columns"),
    "svm": ("scaler_mean", "scaler_scale", "support_vectors", "n_support", "dual_coef", "intercept", "columns"),
}


def model_arrays(trained) -> tuple[dict, dict[str, np.ndarray]]:
    """Turn a fitted :class:`~inspector.core.learning.models.TrainedModel` into ``(spec, arrays)``.

    ``spec`` is JSON for the header, ``arrays`` the numbers. ``columns`` maps the classifier's
    outputs to the project's class columns (classes without labels keep probability 0).
    Raises :class:`ModelFileError` for a model that cannot be exported faithfully.
    """
    if trained is None or trained.estimator is None:
        raise ModelFileError("a model needs labels of at least two classes before it can be exported")
    scaler = trained.estimator.named_steps["scale"]
    clf = trained.estimator.named_steps["classify"]
    arrays: dict[str, np.ndarray] = {
        "scaler_mean": np.asarray(scaler.mean_, np.float64),
        "scaler_scale": np.asarray(scaler.scale_, np.float64),
        "columns": np.asarray(trained._columns, np.int64),
    }
    spec: dict[str, Any] = {"kind": trained.kind, "n_features": int(len(scaler.mean_))}
    if trained.kind == "logistic":
        arrays["coef"] = np.asarray(clf.coef_, np.float64)
        arrays["intercept"] = np.asarray(clf.intercept_, np.float64)
        spec["note"] = ("multinomial softmax of X_scaled @ coef.T + intercept; with two classes coef has one row "
                        "and p(second class) = 1 / (1 + exp(-logit))")
    elif trained.kind == "forest":
        lefts, rights, features, thresholds, values, offsets = [], [], [], [], [], [0]
        for tree in clf.estimators_:
            t = tree.tree_
            lefts.append(t.children_left.astype(np.int64))
            rights.append(t.children_right.astype(np.int64))
            features.append(t.feature.astype(np.int64))
            thresholds.append(t.threshold.astype(np.float64))
            values.append(t.value[:, 0, :].astype(np.float64))
            offsets.append(offsets[-1] + t.node_count)
        arrays.update(children_left=np.concatenate(lefts), children_right=np.concatenate(rights),
                      feature=np.concatenate(features), threshold=np.concatenate(thresholds),
                      value=np.concatenate(values), tree_offsets=np.asarray(offsets, np.int64))
        spec["note"] = ("mean over trees of each tree's leaf class fractions; a sample goes left when "
                        "feature <= threshold; children_left == -1 marks a leaf; node indices are per tree")
    elif trained.kind == "svm":
        svc = getattr(clf, "svc_", None)
        if svc is not None and hasattr(clf, "temperature"):  # the app's SoftmaxSVC
            spec.update(probabilities="softmax_ovr", temperature=float(clf.temperature),
                        note="softmax(one-vs-rest decision / temperature); one-vs-rest values are scikit-learn's "
                             "votes + confidence / (3 (|confidence| + 1)) over libsvm's one-vs-one decisions")
        elif getattr(clf, "probability", False) and hasattr(clf, "_probA"):  # scikit-learn SVC(probability=True)
            svc = clf
            spec.update(probabilities="platt",
                        note="libsvm one-vs-one decision values, Platt sigmoids per pair, pairwise coupling")
        else:
            raise ModelFileError("this SVM has no probabilities that can be reproduced; export a logistic model")
        if svc.kernel not in ("linear", "rbf", "poly", "sigmoid"):
            raise ModelFileError(f"SVM kernel {svc.kernel!r} cannot be exported")
        arrays.update(support_vectors=np.asarray(svc.support_vectors_, np.float64),
                      n_support=np.asarray(svc._n_support, np.int64),
                      dual_coef=np.asarray(svc._dual_coef_, np.float64),
                      intercept=np.asarray(svc._intercept_, np.float64))
        if spec["probabilities"] == "platt":
            arrays.update(prob_a=np.asarray(svc._probA, np.float64), prob_b=np.asarray(svc._probB, np.float64))
        spec.update(kernel=svc.kernel, gamma=float(svc._gamma), coef0=float(svc.coef0), degree=int(svc.degree))
    else:
        raise ModelFileError(f"models of kind {trained.kind!r} cannot be exported")
    return spec, arrays
