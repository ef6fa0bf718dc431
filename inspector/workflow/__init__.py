"""The workflow layer: what an inspector does with a project, without Qt.

Between :mod:`inspector.core` (store, features, learner) and the two front ends (the desktop
app in :mod:`inspector.ui`, the command line in :mod:`inspector.cli`). It holds the logic both
front ends would otherwise write twice, as plain Python that unit tests drive without a display:

- :mod:`.labelling`: one label state, typed label commands written through
  ``learner.record_label`` (the audit flag travels with the image shown), undo/redo history;
- :mod:`.navigation`: which image comes next, back and forward, what to decode ahead, and the
  decoded-image cache policy;
- :mod:`.jobs`: the background jobs (load features, scan and extract, retrain, refill the
  queue, switch or compare extractors, dashboard and gallery data) as plain functions with
  ``progress``/``cancel`` keywords: the app's Qt workers run them in threads, the CLI and tests
  call them directly;
- :mod:`.dashboard_data`, :mod:`.gallery_data`: what the dashboard and the gallery draw.

Imports go down only: ``workflow`` imports ``core``, never ``ui``/``cli`` and never Qt.
"""
