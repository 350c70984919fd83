"""A minimal Confluent-compatible Schema Registry for the tests: the subset of the REST
API that producers and consumers use (register under a subject, look up by id, latest
version). No Confluent-compatible registry server is installable from the package
registries these machines reach, so this stands in for one; the records are still read
by confluent-kafka's own AvroDeserializer, which speaks the real protocol.

usage: registry.py PORT   (prints "ready" when listening)
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
schemas = {}  # id -> schema text
subjects = {}  # subject -> [id, ...]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/vnd.schemaregistry.v1+json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        parts = self.path.strip("/").split("/")
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            text = body["schema"]
            with lock:
                existing = [i for i, s in schemas.items() if s == text]
                sid = existing[0] if existing else len(schemas) + 1
                schemas[sid] = text
                versions = subjects.setdefault(parts[1], [])
                if sid not in versions:
                    versions.append(sid)
            return self.reply(200, {"id": sid})
        if len(parts) == 2 and parts[0] == "subjects":  # lookup: is this schema registered?
            with lock:
                for version, sid in enumerate(subjects.get(parts[1], []), 1):
                    if schemas[sid] == body["schema"]:
                        return self.reply(200, {"subject": parts[1], "id": sid, "version": version, "schema": schemas[sid]})
            return self.reply(404, {"error_code": 40403, "message": "Schema not found"})
        self.reply(404, {"error_code": 404, "message": "not found"})

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        with lock:
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and int(parts[2]) in schemas:
                return self.reply(200, {"schema": schemas[int(parts[2])]})
            if len(parts) == 4 and parts[0] == "subjects" and parts[2] == "versions" and subjects.get(parts[1]):
                ids = subjects[parts[1]]
                version = len(ids) if parts[3] == "latest" else int(parts[3])
                sid = ids[version - 1]
                return self.reply(200, {"subject": parts[1], "id": sid, "version": version, "schema": schemas[sid]})
            if parts == ["subjects"]:
                return self.reply(200, sorted(subjects))
        self.reply(404, {"error_code": 40403, "message": "not found"})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()
