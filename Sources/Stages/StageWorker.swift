import Dispatch
import Foundation
import Logging
import Wire

/// One replica of a stage: a dedicated thread that creates, uses and closes its own sockets
/// (PULL input, PUSH output, PUB tap, REP control). Every blocking ZeroMQ call happens here,
/// never on Swift's cooperative pool (STYLE §6). Waiting is done with `zmq_poll` in short slices
/// so that status requests are answered and stop requests noticed while a send is blocked.
final class StageWorker {
    let spec: StageSpec
    let replica: Int
    let context: ZMQContext
    let group: StageGroup
    let counters: StageCounters
    private var logger: Logger

    private var input: ZMQSocket?
    /// One PUSH socket per downstream replica (or one bound socket for an external consumer).
    private var outputs: [ZMQSocket] = []
    private var tap: ZMQSocket?
    private var control: ZMQSocket?
    private var thread: Thread?

    /// This replica's own end-of-stream accounting (processors).
    private var drain: DrainStateMachine
    /// Counts for the neighbours' accounting, mirrored into the journal.
    private var state = JournalState()
    private var journal: StageJournal?
    /// The previous process's journal, taken over when the first message shows the same stream.
    private var predecessor: JournalState?
    private var streamKnown = false
    /// Where the round-robin over `outputs` starts next.
    private var nextOutput = 0

    /// Poll slice: how often a waiting replica checks stop flags.
    static let pollMilliseconds = 50

    init(spec: StageSpec, replica: Int, context: ZMQContext, group: StageGroup, counters: StageCounters, logger: Logger) {
        self.spec = spec
        self.replica = replica
        self.context = context
        self.group = group
        self.counters = counters
        var logger = logger
        logger[metadataKey: "ts.stage"] = "\(spec.name)"
        logger[metadataKey: "ts.replica"] = "\(replica)"
        self.logger = logger
        drain = DrainStateMachine(expectedEndOfStreams: max(spec.expectedEndOfStreams, 1), idleTimeout: spec.idleTimeout,
                                  drainTimeout: spec.drainTimeout, now: StageGroup.now())
    }

    var senderName: String { "\(spec.name)/\(replica)" }

    func start() {
        let t = Thread { [self] in self.main() }
        t.name = "ts.\(spec.name).\(replica)"
        t.stackSize = 16 << 20
        thread = t
        t.start()
    }

    private struct Stopped: Error {}

    private func main() {
        var failure: Error?
        var endedByMarkers = false
        do {
            try openSockets()
            switch spec.role {
            case .source(let make):
                let source = try make(replica, max(spec.totalReplicas, 1))
                state.streamID = group.streamID
                streamKnown = true
                try runSource(source)
            case .processor(let make):
                try openJournal()
                let processor = try make(replica)
                endedByMarkers = try runProcessor(processor)
            }
        } catch is Stopped {
            logger.info("stage stopped without draining")
        } catch let error as ZMQError where error.isTerminated {
            logger.info("context terminated")
        } catch {
            failure = error
            counters.error("\(error)")
            logger.error("stage failed", metadata: ["ts.error": "\(error)"])
        }
        if failure == nil && spec.sendsEndOfStream && !outputs.isEmpty && !group.isHardStopped {
            do {
                try sendEndOfStream()
            } catch {
                logger.warning("could not send end-of-stream", metadata: ["ts.error": "\(error)"])
            }
        }
        // A stream that ended with every marker seen leaves nothing to take over; a stop in the
        // middle of a stream (SIGTERM, a crash) keeps the journal for the next process.
        if endedByMarkers && failure == nil { journal?.remove() } else { journal?.close() }
        counters.markFinished()
        closeSockets()
        group.memberFinished(error: failure)
    }

    // MARK: sockets

    private func openSockets() throws {
        if let endpoint = spec.input {
            let s = try ZMQSocket(context: context, type: .pull)
            input = s
            try s.set([.receiveHighWaterMark(spec.inputHWM), .linger(milliseconds: 0)])
            try s.bind(StageEndpoints.forReplica(endpoint, replica))
        }
        if let endpoint = spec.output {
            if spec.outputBinds {
                let s = try ZMQSocket(context: context, type: .push)
                outputs = [s]
                try s.set([.sendHighWaterMark(spec.outputHWM)])
                try s.bind(StageEndpoints.forReplica(endpoint, replica))
            } else {
                // One socket per downstream replica: this replica knows what it sent to each, and
                // its end-of-stream markers reach each one (a single PUSH socket would
                // round-robin them). IMMEDIATE: queue only to a live peer, so a missing
                // downstream blocks us instead of swallowing patches into a pipe that may never
                // connect.
                for e in StageEndpoints.allReplicas(endpoint, replicas: spec.outputReplicas) {
                    let s = try ZMQSocket(context: context, type: .push)
                    outputs.append(s)
                    try s.set([.sendHighWaterMark(spec.outputHWM), .immediate(true), .reconnectInterval(milliseconds: 100)])
                    try s.connect(StageEndpoints.connectable(e))
                }
            }
            state.sent = Array(repeating: 0, count: outputs.count)
        }
        if let endpoint = spec.tap {
            let s = try ZMQSocket(context: context, type: .pub)
            tap = s
            try s.set([.sendHighWaterMark(spec.tapHWM), .linger(milliseconds: 0)])
            try s.bind(StageEndpoints.forReplica(endpoint, replica))
        }
        if let endpoint = spec.control {
            let s = try ZMQSocket(context: context, type: .rep)
            control = s
            try s.set(.linger(milliseconds: 0))
            try s.bind(StageEndpoints.forReplica(endpoint, replica))
        }
    }

    private func closeSockets() {
        input?.close(lingerMilliseconds: 0)
        for o in outputs { o.close(lingerMilliseconds: group.isHardStopped ? 0 : spec.lingerMilliseconds) }
        // Linger 0 here dropped the last patch whenever the stage finished before ZeroMQ's I/O
        // thread had written it to the subscriber (7 of 30 one-patch runs lost it).
        tap?.close(lingerMilliseconds: group.isHardStopped ? 0 : min(spec.lingerMilliseconds, StageSpec.tapLingerMilliseconds))
        control?.close(lingerMilliseconds: 0)
        input = nil; outputs = []; tap = nil; control = nil
    }

    // MARK: journal

    /// Opens this replica's journal (after binding the input: a second live process of the same
    /// replica has failed to bind by now) and reads what a previous process left.
    private func openJournal() throws {
        guard let dir = spec.stateDirectory else { return }
        let j = StageJournal(directory: dir, stage: spec.name, replica: replica)
        predecessor = j.previous()
        try j.open()
        journal = j
    }

    /// The first message of the stream: take over the predecessor's journal if it is the same stream.
    private func streamSeen(_ streamID: UInt64) {
        guard !streamKnown else { return }
        streamKnown = true
        state.streamID = streamID
        guard let p = predecessor else { return }
        predecessor = nil
        guard p.streamID == streamID, streamID != 0, p.sent.count == state.sent.count else {
            logger.info("journal of another stream ignored", metadata: ["ts.journal": "\(journal?.path ?? "")"])
            return
        }
        state.received = p.received
        state.emitted = p.emitted
        state.rejected = p.rejected
        state.sent = p.sent
        state.markers = p.markers
        counters.adopt(received: p.received, emitted: p.emitted, rejected: p.rejected)
        drain.restore(received: p.received, markers: p.markers, now: StageGroup.now())
        let inHand = p.inHand
        if inHand > 0 {
            reject("lost-in-crash", count: inHand,
                   "\(inHand) patches were in the hands of the previous process of this replica when it stopped")
        }
        logger.notice("took over the previous process's journal",
                      metadata: ["ts.received": "\(p.received)", "ts.emitted": "\(p.emitted)", "ts.lost": "\(inHand)"])
    }

    private func reject(_ reason: String, count: UInt64 = 1, _ message: String) {
        counters.reject(reason, count: count, error: message)
        state.rejected[reason, default: 0] += count
        journal?.write(state)
    }

    // MARK: loops

    private func runSource(_ source: PatchSource) throws {
        defer { finishWork { try source.finish() } ; counters.setExtras(source.counters(), []) }
        while !group.isShutdownRequested {
            try checkHardStop()
            try serveControl(timeoutMilliseconds: 0)
            let started = Date()
            let t0 = StageGroup.now()
            let produced: PatchMessage?
            do {
                produced = try source.next()
            } catch let rejection as StageRejection {
                counters.reject(rejection.reason, error: rejection.description)
                logger.warning("source item rejected", metadata: ["ts.reason": "\(rejection.reason)", "ts.error": "\(rejection.detail)"])
                continue
            }
            guard var patch = produced else { break }
            counters.receivedOne()
            let busy = StageGroup.now() - t0
            patch.streamID = group.streamID
            patch.provenance.append(StageTiming(stage: spec.name, replica: replica, host: spec.host,
                                                startedUnix: started.timeIntervalSince1970, seconds: busy))
            try emit(patch)
            counters.done(busy: busy, latency: StageGroup.now() - t0)
            counters.setExtras(source.counters(), [])
        }
        logger.info("source finished", metadata: ["ts.emitted": "\(counters.snapshot().emitted)"])
    }

    /// Returns true when the stream ended (every expected marker seen), false for a drain
    /// without markers (graceful shutdown of this process alone).
    private func runProcessor(_ processor: PatchProcessor) throws -> Bool {
        defer { finishWork { try processor.finish() }; counters.setExtras(processor.counters(), processor.gauges()) }
        guard let input else { preconditionFailure("stage \(spec.name) has a processor but no input endpoint") }
        while true {
            try checkHardStop()
            if !drain.isShuttingDown, let at = group.shutdownRequestedAt { drain.shutdownRequested(now: at) }
            var items: [(socket: ZMQSocket, events: ZMQPollEvents)] = [(input, .readable)]
            if let control { items.append((control, .readable)) }
            let ready = try ZMQSocket.poll(items, timeoutMilliseconds: StageWorker.pollMilliseconds)
            if ready.count > 1, ready[1].contains(.readable) { try answerStatus() }
            if ready[0].contains(.readable), let frames = try input.receive(mode: .dontWait) {
                try handle(frames, processor)
            }
            if case .finish(let lost) = drain.tick(now: StageGroup.now()) {
                if lost > 0 {
                    group.addLost(lost)
                    reject("lost-in-transit", count: lost, "\(lost) messages announced by upstream never arrived")
                    logger.warning("messages lost in transit", metadata: ["ts.lost": "\(lost)"])
                }
                return drain.allEndOfStreamsSeen
            }
        }
    }

    private func handle(_ frames: [ZMQFrame], _ processor: PatchProcessor) throws {
        let patch: PatchMessage
        do {
            patch = try PatchMessage.decode(frames: frames)
        } catch let error as WireError {
            counters.reject(error.code.description, error: error.description)
            logger.warning("bad message skipped", metadata: ["ts.reason": "\(error.code)", "ts.error": "\(error.reason)"])
            return
        }
        streamSeen(patch.streamID)
        if patch.endOfStream {
            drain.endOfStream(sent: patch.patchID, from: patch.sender, now: StageGroup.now())
            state.markers = drain.markerSenders
            journal?.write(state)
            return
        }
        // Only readable patches count towards the drain: a bad message from outside must not
        // stand in for a patch still on its way.
        drain.messageReceived(now: StageGroup.now())
        counters.receivedOne()
        state.received += 1
        journal?.write(state)
        let started = Date()
        let t0 = StageGroup.now()
        let result: PatchMessage?
        do {
            result = try processor.process(patch)
            if spec.delayMilliseconds > 0 { Thread.sleep(forTimeInterval: Double(spec.delayMilliseconds) / 1000) }
        } catch let rejection as StageRejection {
            reject(rejection.reason, rejection.description)
            logger.warning("patch rejected", metadata: ["ts.patch": "\(patch.patchID)", "ts.reason": "\(rejection.reason)",
                                                        "ts.error": "\(rejection.detail)"])
            return
        } catch {
            reject("error", "\(error)")
            logger.error("patch failed", metadata: ["ts.patch": "\(patch.patchID)", "ts.error": "\(error)"])
            return
        }
        let busy = StageGroup.now() - t0
        if var out = result {
            out.streamID = patch.streamID
            out.provenance.append(StageTiming(stage: spec.name, replica: replica, host: spec.host,
                                              startedUnix: started.timeIntervalSince1970, seconds: busy))
            if !outputs.isEmpty {
                try emit(out)
            } else {
                delivered()  // a sink that returns its patch: counted as delivered
            }
        } else {
            delivered()  // consumed by a sink: delivered
        }
        counters.done(busy: busy, latency: StageGroup.now() - t0)
        counters.setExtras(processor.counters(), processor.gauges())
    }

    private func delivered() {
        counters.emittedOne()
        state.emitted += 1
        journal?.write(state)
    }

    private func finishWork(_ body: () throws -> Void) {
        do { try body() } catch {
            counters.error("finish: \(error)")
            logger.error("finish failed", metadata: ["ts.error": "\(error)"])
        }
    }

    // MARK: sending

    /// Sends downstream (blocking, polled in slices: the blocked time is backpressure), then
    /// offers the same frames to the tap without waiting.
    private func emit(_ patch: PatchMessage) throws {
        let frames = patch.encode()
        if !outputs.isEmpty {
            let d = try sendToAny(frames)
            state.sent[d] += 1
        }
        counters.emittedOne()
        state.emitted += 1
        journal?.write(state)
        if let tap { _ = try tap.send(frames, mode: .dontWait) }
    }

    /// Sends to the first output, in round-robin order, that takes the message now; when none
    /// does, waits (polling in slices) until one can. Returns the output's index.
    private func sendToAny(_ frames: [OutboundFrame]) throws -> Int {
        let n = outputs.count
        func tryAll() throws -> Int? {
            for k in 0..<n {
                let i = (nextOutput + k) % n
                if try outputs[i].send(frames, mode: .dontWait) {
                    nextOutput = (i + 1) % n
                    return i
                }
            }
            return nil
        }
        if let i = try tryAll() { return i }
        counters.beginBlocked()
        defer { counters.endBlocked() }
        while true {
            try checkHardStop()
            var items: [(socket: ZMQSocket, events: ZMQPollEvents)] = outputs.map { ($0, .writable) }
            if let control { items.append((control, .readable)) }
            let ready = try ZMQSocket.poll(items, timeoutMilliseconds: StageWorker.pollMilliseconds)
            if control != nil, ready[n].contains(.readable) { try answerStatus() }
            if ready[..<n].contains(where: { $0.contains(.writable) }), let i = try tryAll() { return i }
        }
    }

    private func sendBlocking(_ frames: [OutboundFrame], on socket: ZMQSocket) throws {
        if try socket.send(frames, mode: .dontWait) { return }
        while true {
            try checkHardStop()
            var items: [(socket: ZMQSocket, events: ZMQPollEvents)] = [(socket, .writable)]
            if let control { items.append((control, .readable)) }
            let ready = try ZMQSocket.poll(items, timeoutMilliseconds: StageWorker.pollMilliseconds)
            if ready.count > 1, ready[1].contains(.readable) { try answerStatus() }
            if ready[0].contains(.writable), try socket.send(frames, mode: .dontWait) { return }
        }
    }

    /// One marker to every downstream replica, behind this replica's last patch to it, with the
    /// count sent to it. (An external consumer's bound socket gets one marker.)
    private func sendEndOfStream() throws {
        for (d, socket) in outputs.enumerated() {
            let marker = PatchMessage.endOfStream(count: state.sent[d], streamID: state.streamID, sender: senderName)
            try sendBlocking(marker.encode(), on: socket)
        }
        logger.info("end-of-stream sent", metadata: ["ts.sent": "\(state.sent)"])
    }

    private func checkHardStop() throws {
        if group.isHardStopped { throw Stopped() }
    }

    // MARK: control

    private func serveControl(timeoutMilliseconds: Int) throws {
        guard let control else { return }
        if try control.poll(.readable, timeoutMilliseconds: timeoutMilliseconds).contains(.readable) {
            try answerStatus()
        }
    }

    private func answerStatus() throws {
        guard let control, let frames = try control.receive(mode: .dontWait) else { return }
        var reply = counters.snapshot().statusReply
        do {
            guard frames.count == 1 else { throw WireError(.unexpectedMessage, "status request has \(frames.count) frames") }
            _ = try StatusRequest.decode(frames[0].bytes)
        } catch {
            reply.lastError = "bad status request: \(error)"
        }
        _ = try control.send(bytes: reply.encode(), mode: .dontWait)
    }
}
