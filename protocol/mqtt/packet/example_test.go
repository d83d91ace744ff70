package packet_test

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/lyremq/lyre/protocol/mqtt/packet"
)

// A session reads CONNECT, switches the Reader to the client's level, then reads on.
func Example() {
	var wire []byte
	wire = packet.Append(wire, &packet.ConnectPacket{ProtocolName: "MQTT", ProtocolLevel: packet.Version311,
		CleanSession: true, KeepAlive: 30, ClientID: "c1"}, 0)
	wire = packet.AppendPublish(wire, &packet.PublishPacket{QoS: 1, Topic: "a/b", PacketID: 1, Payload: []byte("hi")},
		packet.Version311)

	r := packet.NewReader(bytes.NewReader(wire), 1<<20)
	p, err := r.ReadPacket()
	if errors.Is(err, packet.ErrUnsupportedVersion) {
		// answer CONNACK 0x01 using p.(*packet.ConnectPacket), then close
		return
	}
	connect := p.(*packet.ConnectPacket)
	r.SetVersion(connect.ProtocolLevel)
	p, _ = r.ReadPacket()
	pub := p.(*packet.PublishPacket)
	fmt.Println(connect.ClientID, pub.Topic, string(pub.Payload))
	fmt.Printf("% X\n", packet.AppendAck(nil, packet.Puback, pub.PacketID, connect.ProtocolLevel))
	// Output:
	// c1 a/b hi
	// 40 02 00 01
}
