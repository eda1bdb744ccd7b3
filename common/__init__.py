"""lstm-sweep: hyperparameter search for LSTM text models, on a laptop or a Ray cluster.

Installed, the project is this one package; the repository's top-level folders are it and
its subpackages, mapped by ``setup.cfg``::

    lstm_sweep                 common/          this file, __main__, errors (and what every layer shares)
    lstm_sweep.data_pipeline   data_pipeline/   corpora -> cleaned, tokenized, cached arrays -> tf.data
    lstm_sweep.model           model/           Keras models, cells, the model spec, the memory model
    lstm_sweep.search          search/          the sweep config, tasks, Ray Tune trainable and Tuner, the CLI
    lstm_sweep.results         results/         trials.csv, curves.csv, plots, report.html
    lstm_sweep.sweeps          sweeps/          the shipped sweep files (quick.yaml, ...)

Example:
    >>> import lstm_sweep
    >>> lstm_sweep.__version__  # doctest: +SKIP
    '0.1.0'
"""

__version__ = "0.1.0"

from lstm_sweep.errors import UserError  # noqa: E402  (light: no TensorFlow, no Ray)

__all__ = ["UserError", "__version__"]
