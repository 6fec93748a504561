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
    private var output: ZMQSocket?
    private var tap: ZMQSocket?
    private var control: ZMQSocket?
    private var thread: Thread?

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
    }

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
        do {
            try openSockets()
            switch spec.role {
            case .source(let make):
                let source = try make(replica, max(spec.totalReplicas, 1))
                try runSource(source)
            case .processor(let make):
                let processor = try make(replica)
                try runProcessor(processor)
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
        let last = group.memberStopping()
        if last && failure == nil && spec.sendsEndOfStream && output != nil && !group.isHardStopped {
            do {
                try sendEndOfStream()
            } catch {
                logger.warning("could not send end-of-stream", metadata: ["ts.error": "\(error)"])
            }
        }
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
            let s = try ZMQSocket(context: context, type: .push)
            output = s
            // IMMEDIATE: queue only to live peers, so a missing downstream blocks us instead of
            // swallowing patches into a pipe that may never connect.
            try s.set([.sendHighWaterMark(spec.outputHWM), .immediate(true), .reconnectInterval(milliseconds: 100)])
            for e in StageEndpoints.allReplicas(endpoint, replicas: spec.outputReplicas) {
                try s.connect(StageEndpoints.connectable(e))
            }
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
        output?.close(lingerMilliseconds: group.isHardStopped ? 0 : spec.lingerMilliseconds)
        tap?.close(lingerMilliseconds: 0)
        control?.close(lingerMilliseconds: 0)
        input = nil; output = nil; tap = nil; control = nil
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
            patch.provenance.append(StageTiming(stage: spec.name, replica: replica, host: spec.host,
                                                startedUnix: started.timeIntervalSince1970, seconds: busy))
            try emit(patch)
            counters.done(busy: busy, latency: StageGroup.now() - t0)
            counters.setExtras(source.counters(), [])
        }
        logger.info("source finished", metadata: ["ts.emitted": "\(counters.snapshot().emitted)"])
    }

    private func runProcessor(_ processor: PatchProcessor) throws {
        defer { finishWork { try processor.finish() }; counters.setExtras(processor.counters(), processor.gauges()) }
        guard let input else { preconditionFailure("stage \(spec.name) has a processor but no input endpoint") }
        while true {
            try checkHardStop()
            var items: [(socket: ZMQSocket, events: ZMQPollEvents)] = [(input, .readable)]
            if let control { items.append((control, .readable)) }
            let ready = try ZMQSocket.poll(items, timeoutMilliseconds: StageWorker.pollMilliseconds)
            if ready.count > 1, ready[1].contains(.readable) { try answerStatus() }
            if ready[0].contains(.readable), let frames = try input.receive(mode: .dontWait) {
                try handle(frames, processor)
            }
            if case .finish(let lost) = group.tick() {
                if lost > 0 {
                    counters.reject("lost-in-transit", error: "\(lost) messages announced by upstream never arrived")
                    logger.warning("messages lost in transit", metadata: ["ts.lost": "\(lost)"])
                }
                break
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
        if patch.endOfStream {
            group.endOfStream(sent: patch.patchID)
            return
        }
        // Only readable patches count towards the drain: a bad message from outside must not
        // stand in for a patch still on its way.
        group.messageReceived()
        counters.receivedOne()
        let started = Date()
        let t0 = StageGroup.now()
        let result: PatchMessage?
        do {
            result = try processor.process(patch)
            if spec.delayMilliseconds > 0 { Thread.sleep(forTimeInterval: Double(spec.delayMilliseconds) / 1000) }
        } catch let rejection as StageRejection {
            counters.reject(rejection.reason, error: rejection.description)
            logger.warning("patch rejected", metadata: ["ts.patch": "\(patch.patchID)", "ts.reason": "\(rejection.reason)",
                                                        "ts.error": "\(rejection.detail)"])
            return
        } catch {
            counters.reject("error", error: "\(error)")
            logger.error("patch failed", metadata: ["ts.patch": "\(patch.patchID)", "ts.error": "\(error)"])
            return
        }
        let busy = StageGroup.now() - t0
        if var out = result {
            out.provenance.append(StageTiming(stage: spec.name, replica: replica, host: spec.host,
                                              startedUnix: started.timeIntervalSince1970, seconds: busy))
            if output != nil {
                try emit(out)
            } else {
                counters.emittedOne()  // a sink that returns its patch: counted as delivered
            }
        } else {
            counters.emittedOne()  // consumed by a sink: delivered
        }
        counters.done(busy: busy, latency: StageGroup.now() - t0)
        counters.setExtras(processor.counters(), processor.gauges())
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
        if let output {
            try sendBlocking(frames, on: output)
            group.addEmitted()
        }
        counters.emittedOne()
        if let tap { _ = try tap.send(frames, mode: .dontWait) }
    }

    private func sendBlocking(_ frames: [OutboundFrame], on socket: ZMQSocket) throws {
        if try socket.send(frames, mode: .dontWait) { return }
        counters.beginBlocked()
        defer { counters.endBlocked() }
        while true {
            try checkHardStop()
            var items: [(socket: ZMQSocket, events: ZMQPollEvents)] = [(socket, .writable)]
            if let control { items.append((control, .readable)) }
            let ready = try ZMQSocket.poll(items, timeoutMilliseconds: StageWorker.pollMilliseconds)
            if ready.count > 1, ready[1].contains(.readable) { try answerStatus() }
            if ready[0].contains(.writable), try socket.send(frames, mode: .dontWait) { return }
        }
    }

    private func sendEndOfStream() throws {
        guard let output else { return }
        let marker = PatchMessage.endOfStream(patchID: group.totalEmitted)
        try sendBlocking(marker.encode(), on: output)
        logger.info("end-of-stream sent", metadata: ["ts.sent": "\(group.totalEmitted)"])
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
