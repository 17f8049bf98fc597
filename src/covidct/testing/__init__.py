"""Builders and oracles shared by the tests and the benchmarks (not used by the pipeline): the
anonymizer's leak oracle and corpus runner (``leaks``), and the transcoding of real slices into
every CT transfer syntax (``transcode``), synthetic chest slices with known lungs and lesions (``slices``)."""
