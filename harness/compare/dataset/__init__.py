"""The dataset wing (``check --dataset``): where samples come from (:mod:`.sources`), one batch compared
(:mod:`.batch`), per-sample statistics folded together (:mod:`.aggregate`), the run (:mod:`.run`), its report
(:mod:`.report`), baselines (:mod:`.baseline`) and Dask scale-out (:mod:`.scaleout`)."""
