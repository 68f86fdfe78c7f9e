"""`hookstream worker`: one process running fan-out, delivery, the history's feeder, the
control and dead-letter agents, the API and the console.

main      - reads nothing itself: builds the runtime from the settings it is given, installs
            every part onto it, runs faust
pipeline  - the service that starts the local views, the history's feeder and the two
            stages with the app, and samples lag; readiness

Start as many as you like with the same settings: they form consumer groups and share the
partitions (control, dead letters and the history table through faust's group, the
history's feeder following it: streams.history.feeder; fan-out and delivery through their
own, streams.pipeline.stage).
"""
