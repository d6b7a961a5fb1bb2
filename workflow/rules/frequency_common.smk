# Helpers of frequency.smk (kept apart: Snakemake's lint wants rules and
# functions in different files).
FREQ = config["frequency"]
MARG = config["margins"]
SYN = config["synthetic"]
FREQ_SPLITS = FREQ["splits"]
FREQ_SEED = FREQ["seed"]
FREQ_VARIANTS = FREQ["variants"]
FORGET_SPLITS = FREQ["forgetting"]["splits"]
DECIMALS = config["tables"]["decimals"]
MARGIN_KEYS = ("block", "stride", "num_classes", "overshoot", "max_iter", "subspace_chunk",
               "image_chunk", "seed")


def variant_data(variant):
    return "data/ccm" if variant == "original" else f"data/derived/{variant}"


def split_variant_data(split, variant):
    """A frequency variant of the dataset a split indexes: C-CCM's, or SynthSource's."""
    return f"data/synth_source_derived/{variant}" if split == SOURCE_SPLIT else variant_data(variant)


def variant_model(split, variant):
    """ST on the original data is the study's own model; others are trained here."""
    if variant == "original":
        return model_path(split, FREQ["strategy"], FREQ_SEED)
    return f"models/derived/{split}/{variant}/seed{FREQ_SEED}/model.safetensors"


# Margin models by label: study models by id, variant models as <strategy>_<variant>.
MARGIN_MODELS = {m: ("study", m) for m in MARG["models"]}
MARGIN_MODELS.update({f"{FREQ['strategy']}_{v}": ("variant", v) for v in MARG["variant_models"]})


def margin_weights(w):
    kind, name = MARGIN_MODELS[w.mmodel]
    return model_path(w.split, model_id(name), FREQ_SEED) if kind == "study" else variant_model(w.split, name)


def _alternatives(names):
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


def adversarial_hyper():
    """The frequency strategy's recipe made adversarial with frequency.energy.eps.

    No train.eps_scale: the thesis' eps is a 32-px eps (frequency_study.energy_eps).
    """
    hyper = strategy_params(config, FREQ["strategy"])
    adv = dict(config["train"]["adversarial"], eps=FREQ["energy"]["eps"])
    return dict(hyper, adversarial=adv)


CROSS_MODELS = [(s, v, variant_model(s, v)) for s in FREQ_SPLITS for v in FREQ["train_variants"]]
CROSS_DATA = {v: variant_data(v) for v in ["original"] + FREQ_VARIANTS}


# The T2 eps sweep (Fig. 4.10), one job per eps: each eps trains its own model from the
# same seed, so a job's row does not depend on the other eps values (adding one eps runs
# one job) and the sweep spreads over the free cores or cluster nodes.
TRANSITION_EPS = {eps_label(e): float(e) for e in SYN["transition"]["eps_values"]}
if len(TRANSITION_EPS) != len(set(map(float, SYN["transition"]["eps_values"]))):
    raise ValueError(f"synthetic.transition.eps_values: {SYN['transition']['eps_values']} has values that "
                     "agree to 6 significant digits (one job per eps, named by eps_label); expected distinct ones")
TRANSITION_PARTS = [f"results/frequency/synthetic_transition/eps{eps_label(e)}.parquet"
                    for e in SYN["transition"]["eps_values"]]


def transition_params(label):
    """The synthetic settings of one eps of the T2 sweep (``label`` a key of TRANSITION_EPS)."""
    p = {k: v for k, v in SYN.items() if k != "models"}
    return j(dict(p, transition=dict(p["transition"], eps_values=[TRANSITION_EPS[label]])))


# Results whose tables and figures rule tables_frequency writes (table name = file stem).
FREQ_RESULT_NAMES = ["synthetic_margins", "synthetic_transition"] + [
    f"forgetting_{split}" for split in FORGET_SPLITS] + [f"adversarial_energy_{split}" for split in FREQ_SPLITS]
FREQ_RESULTS = [f"results/frequency/{name}.parquet" for name in FREQ_RESULT_NAMES]
