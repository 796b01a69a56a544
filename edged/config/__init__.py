"""The daemon's configuration file, in five modules:

* ``document``: reading YAML that remembers where every key is, and the problems found;
* ``types``: the value types of keys (ids, ports, rates, paths, secrets) and their checks;
* ``sections``: each section's keys, defaults and secrets;
* ``model``: ``Config``, the whole file, mapped onto the engine and the room server;
* ``load``: text to ``Config`` (every problem at once) and ``edged check-config``.
"""
