# Constants and input functions of the Top-GAP rules (workflow/rules/topgap.smk).
from fillrobust.report.topgap import member_params, members as topgap_members

TOPGAP = config.get("topgap") or {"splits": [], "k_grid": [], "ablation": [], "compare": []}
TOPGAP_MEMBERS = list(topgap_members(TOPGAP)) if config.get("topgap") else []
TOPGAP_MODELS = TOPGAP_MEMBERS + [m for m in TOPGAP["compare"] if m not in TOPGAP_MEMBERS]
TOPGAP_MEMBER_RE = "|".join(re.escape(m) for m in TOPGAP_MEMBERS) or "(?!x)x"


def topgap_train_inputs(w):
    """Dataset, split, the source model when the recipe starts from one, and an outside
    backbone file (`topgap.weights`): a missing one stops Snakemake while it plans, before the
    old model is deleted, and a new one retrains the member."""
    params = member_params(config, w.member, w.split)
    inputs = {"data": dataset_dir(w.split), "split": f"data/splits/{w.split}.parquet"}
    if params.get("init") == "source":
        inputs["source"] = source_path(params["source_eps"])
    if (params.get("topgap") or {}).get("weights"):
        inputs["backbone"] = params["topgap"]["weights"]
    return inputs


def topgap_weights(w):
    """A Top-GAP member's checkpoint, or the study model of a compare strategy."""
    if w.model in TOPGAP_MEMBERS:
        return f"models/{w.split}/topgap/{w.model}/seed{w.seed}/model.safetensors"
    return model_path(w.split, model_id(w.model), w.seed)
