"""What runs inside a proposal Job (never in the operator's process).

* ``dgm propose-llm`` (:mod:`.llm`): the built-in LLM proposer. Reads the context document,
  asks an OpenAI-compatible endpoint to diagnose and then to edit, applies the SEARCH/REPLACE
  edits, and writes a ``ProposalResult``.
* ``dgm proposal-result`` (:mod:`.result`): the Job's ``result`` container. Reads what the
  proposer left in ``/proposal/out`` (``result.json``, or changed files under ``files/``) and
  prints it between the result markers, where the operator reads it from the pod's log.

The contract itself (documents, markers, bounds) is pure data in ``engine/proposal.py``.
"""
