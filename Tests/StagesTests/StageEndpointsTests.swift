import Stages
import XCTest

final class StageEndpointsTests: XCTestCase {
    func testReplicaEndpoints() {
        XCTAssertEqual(StageEndpoints.forReplica("tcp://127.0.0.1:5603", 0), "tcp://127.0.0.1:5603")
        XCTAssertEqual(StageEndpoints.forReplica("tcp://127.0.0.1:5603", 2), "tcp://127.0.0.1:5605")
        XCTAssertEqual(StageEndpoints.forReplica("inproc://sampler.in", 1), "inproc://sampler.in.1")
        XCTAssertEqual(StageEndpoints.allReplicas("ipc:///tmp/x", replicas: 2), ["ipc:///tmp/x", "ipc:///tmp/x.1"])
        XCTAssertEqual(StageEndpoints.connectable("tcp://0.0.0.0:7000"), "tcp://127.0.0.1:7000")
    }

    func testValidation() throws {
        try StageEndpoints.validate("tcp://127.0.0.1:5600")
        try StageEndpoints.validate("tcp://127.0.0.1:*")
        try StageEndpoints.validate("inproc://a")
        for bad in ["127.0.0.1:5600", "tcp://127.0.0.1", "tcp://127.0.0.1:99999", "tcp://h:x", "inproc://", "udp://a:1"] {
            XCTAssertThrowsError(try StageEndpoints.validate(bad), bad)
        }
    }
}
