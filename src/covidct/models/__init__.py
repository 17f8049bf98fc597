"""The 3D models of the original study (the subject-level split is ``covidct.split``): the HDF5 data sets
(``data``), the model-ready input array (``inputs``), the 3D CNN (``cnn3d``), training with
checkpoint and threshold chosen on val and cross-validation (``train``), predictions (``predict``)."""
