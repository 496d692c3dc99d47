"""Image sequences and video: identity across frames, the sequence result file, temporal smoothing,
placement in 3-D and exports.

Modules (none starts a job; the sequence job of the job layer calls them):

* :mod:`.tracker`: ``Tracker`` associates per-frame results into tracks and proposes crops;
* :mod:`.sequence_file`: ``SequenceBuilder`` / ``ClipInfo`` write ``<clip>.pixie-seq.npz``;
* :mod:`.placement`: the one perspective camera and per-person root translations;
* :mod:`.shape`: the fixed shape of a track (robust average of betas);
* :mod:`.smoothing`: zero-phase One-Euro filter (shared, byte-identical, with the add-on);
* :mod:`.amass`: AMASS-style SMPL-X ``.npz`` per track;
* :mod:`.synthetic_clip`: the synthetic body moving, for tests.
"""
