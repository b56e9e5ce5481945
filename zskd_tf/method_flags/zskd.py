"""Flags of ZSKD (``--procedure=data_impressions``)."""
from absl import flags

flags.DEFINE_list("betas", ["1.0", "0.1"],
                  "Dirichlet concentration scales; the impressions are split equally among "
                  "them (and among the classes).")
flags.DEFINE_string("final_layer", None,
                    "Name of the teacher's final Dense layer (default: found automatically).")
flags.DEFINE_list("input_range", None,
                  "Foreign teachers without model_info.json: LOW,HIGH of their input values "
                  "(default 0,1).")
