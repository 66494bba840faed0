"""The coalition's hub: receives envelopes from hotspots, issues signed receipts, ingests
bundles carried on drives, offers packs, and lets staff read contributions.

Modules: ``storage`` (the blob interface, local disk first), ``registry`` (hotspots, tokens,
staff), ``inbox`` (envelopes, receipts, bundles, export), ``uploads`` (tus), ``publishing``
(packs), ``receipts`` (the signed receipt format, shared with ``hotspot.sync``), ``web``
(``create_hub_app``) and ``cli`` (``hotspot hub ...``). Staff documentation: ``docs/hub.md``.
"""
