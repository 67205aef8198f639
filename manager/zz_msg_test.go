package manager
import ("testing";"fmt")
func TestMsgs(t *testing.T){
 for _, c := range []Config{{NodeID:"n",Peers:"nats//x"},{NodeID:"n",ClientPort:70000},{NodeID:"bad id",Peers:"nats://a:1,,nats://u:pw@b"},{NodeID:"n",URL:"http://u:pw@h:1"}} { fmt.Println(c.Validate()); fmt.Println("--") }
 _, err := New(Config{NodeID:"n"}); fmt.Println(err)
}
