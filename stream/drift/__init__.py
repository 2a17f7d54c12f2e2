"""Drift of the realized positive rate: detectors for streams of 0/1 outcomes.

``detectors`` holds the change detectors (:class:`~metasignal.stream.drift.detectors.BernoulliCUSUM`
and the :func:`~metasignal.stream.drift.detectors.make_detector` factory); the monitor and the
policy that act on their alarms live in sibling modules.
"""
