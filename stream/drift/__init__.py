"""Drift: of the realized positive rate (from outcomes) and of the live rate (from scores alone).

* ``detectors``: change detectors on 0/1 outcomes
  (:class:`~metasignal.stream.drift.detectors.BernoulliCUSUM`, ``make_detector``);
* ``prior``: the live positive rate under label shift from calibrated scores (Saerens et al.
  2002), prior-corrected posteriors, and the outcomes' agreement with the estimate;
* ``expected``: expected precision, recall and F1 from calibrated probabilities (CBPE);
* ``label_free``: both over a sliding window of the scorer's votes;
* ``label_shift``: :class:`~metasignal.stream.drift.label_shift.PriorShiftCUSUM`, the
  outcome CUSUM fed scores instead of outcomes;
* ``consistency``: whether a change of the scores is a prior shift at all;
* ``monitor`` and ``policy``: the state per model and the requests made from it.
"""
