"""The reports wing (lowest of compare/): per-blob and per-layer results (:mod:`.result`), the report and its
renderings (:mod:`.report`: text, JSON, HTML, JUnit), CI annotations (:mod:`.annotations`), SARIF (:mod:`.sarif`) and
the table of cause codes (:mod:`.causes`).  It imports nothing else of ``harness.compare``."""
