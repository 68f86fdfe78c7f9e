"""`hookstream worker`: one process running fan-out, delivery, control, the dead-letter and
history agents, the API and the console.

main      - reads nothing itself: builds the runtime from the settings it is given, installs
            every part onto it, runs faust
pipeline  - the service that starts the local views and the two stages with the app, and
            samples lag; readiness

Start as many as you like with the same settings: they form consumer groups and share the
partitions (control, dead letters and history through faust's group; fan-out and delivery
through their own, streams.pipeline.stage).
"""
