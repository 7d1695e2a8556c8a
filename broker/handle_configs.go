package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/riffle-stream/riffle/broker/internal/metadata"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// brokerConfigs are the dynamic broker-level keys: the defaults of the
// topic keys, settable per broker or cluster-wide.
var brokerConfigs = func() []configDef {
	var defs []configDef
	for _, d := range topicConfigs {
		if d.brokerName == "" || findDef(defs, d.brokerName) != nil {
			continue
		}
		bd := d
		bd.name, bd.brokerName = d.brokerName, ""
		defs = append(defs, bd)
		slices.SortFunc(defs, func(a, b configDef) int { return strings.Compare(a.name, b.name) })
	}
	return defs
}()

// configError is a per-resource failure with its Kafka error code.
type configError struct {
	code *kerr.Error
	msg  string
}

func (e *configError) Error() string { return e.msg }

func invalidConfig(err error) error {
	return &configError{kerr.InvalidConfig, err.Error()}
}

// errorCode splits err into a Kafka error code and message.
func errorCode(err error) (int16, *string) {
	if err == nil {
		return 0, nil
	}
	var ce *configError
	if errors.As(err, &ce) {
		return ce.code.Code, kmsg.StringPtr(ce.msg)
	}
	switch {
	case errors.Is(err, metadata.ErrUnknownTopic):
		return kerr.UnknownTopicOrPartition.Code, kmsg.StringPtr(err.Error())
	case errors.Is(err, metadata.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code, kmsg.StringPtr(err.Error())
	case errors.Is(err, metadata.ErrInvalidPartitions):
		return kerr.InvalidPartitions.Code, kmsg.StringPtr(err.Error())
	case errors.Is(err, metadata.ErrPolicyViolation):
		return kerr.PolicyViolation.Code, kmsg.StringPtr(err.Error())
	case errors.Is(err, metadata.ErrTooLarge):
		return kerr.InvalidRequest.Code, kmsg.StringPtr(err.Error())
	case errors.Is(err, metadata.ErrNotLeader):
		return kerr.NotController.Code, kmsg.StringPtr(err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return kerr.RequestTimedOut.Code, kmsg.StringPtr(err.Error())
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Code, kmsg.StringPtr(err.Error())
	}
	return kerr.UnknownServerError.Code, kmsg.StringPtr(err.Error())
}

// configResource checks a resource named in a config request and returns
// the catalog of keys it takes.
func (b *Broker) configResource(img *metadata.Image, typ kmsg.ConfigResourceType, name string) (metadata.ConfigResource, []configDef, error) {
	r := metadata.ConfigResource{Type: metadata.ResourceType(typ), Name: name}
	switch typ {
	case kmsg.ConfigResourceTypeTopic:
		if err := validTopicName(name); err != nil {
			return r, nil, &configError{kerr.InvalidTopicException, err.Error()}
		}
		if _, ok := img.Topics[name]; !ok {
			return r, nil, &configError{kerr.UnknownTopicOrPartition, fmt.Sprintf("topic %q does not exist", name)}
		}
		return r, topicConfigs, nil
	case kmsg.ConfigResourceTypeBroker:
		if name != "" && name != strconv.Itoa(int(b.cfg.nodeID)) {
			return r, nil, &configError{kerr.InvalidRequest, fmt.Sprintf("broker %q is not this broker (%d)", name, b.cfg.nodeID)}
		}
		return r, brokerConfigs, nil
	case kmsg.ConfigResourceTypeGroupConfig:
		if name == "" {
			return r, nil, &configError{kerr.InvalidGroupID, "empty group id"}
		}
		if len(name) > metadata.MaxStringLen {
			return r, nil, &configError{kerr.InvalidGroupID, fmt.Sprintf("group id is %d bytes, more than the %d a config record holds", len(name), metadata.MaxStringLen)}
		}
		return r, groupConfigs, nil
	}
	return r, nil, &configError{kerr.InvalidRequest, fmt.Sprintf("config resource type %d is not supported", typ)}
}

func (b *Broker) handleDescribeConfigs(_ context.Context, req *kmsg.DescribeConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	img := b.meta.Image()
	for _, rr := range req.Resources {
		res := kmsg.NewDescribeConfigsResponseResource()
		res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
		r, defs, err := b.configResource(img, rr.ResourceType, rr.ResourceName)
		if err != nil {
			res.ErrorCode, res.ErrorMessage = errorCode(err)
			resp.Resources = append(resp.Resources, res)
			continue
		}
		if r.Type == metadata.ResourceBroker {
			res.Configs = b.brokerStatic()
		}
		set := img.Configs[r]
		for i := range defs {
			d := &defs[i]
			c := kmsg.NewDescribeConfigsResponseResourceConfig()
			c.Name, c.ConfigType = d.name, d.typ
			val, src := d.def, kmsg.ConfigSourceDefaultConfig
			var syn []kmsg.DescribeConfigsResponseResourceConfigConfigSynonym
			if r.Type == metadata.ResourceTopic {
				val, src = brokerDefault(img, b.cfg.nodeID, d)
				if req.IncludeSynonyms && d.brokerName != "" {
					syn = append(syn, synonym(d.brokerName, val, src))
				}
			}
			if v, ok := set[d.name]; ok {
				if req.IncludeSynonyms {
					syn = slices.Insert(syn, 0, synonym(d.name, v, explicitSource(r.Type, r.Name)))
				}
				val, src = v, explicitSource(r.Type, r.Name)
			}
			c.Value, c.Source, c.IsDefault, c.ConfigSynonyms = kmsg.StringPtr(val), src, src == kmsg.ConfigSourceDefaultConfig, syn
			if req.IncludeDocumentation {
				c.Documentation = kmsg.StringPtr(d.doc)
			}
			res.Configs = append(res.Configs, c)
		}
		if rr.ConfigNames != nil {
			res.Configs = slices.DeleteFunc(res.Configs, func(c kmsg.DescribeConfigsResponseResourceConfig) bool {
				return !slices.Contains(rr.ConfigNames, c.Name)
			})
		}
		resp.Resources = append(resp.Resources, res)
	}
	return resp
}

func synonym(name, val string, src kmsg.ConfigSource) kmsg.DescribeConfigsResponseResourceConfigConfigSynonym {
	s := kmsg.NewDescribeConfigsResponseResourceConfigConfigSynonym()
	s.Name, s.Value, s.Source = name, kmsg.StringPtr(val), src
	return s
}

func explicitSource(t metadata.ResourceType, name string) kmsg.ConfigSource {
	switch {
	case t == metadata.ResourceTopic:
		return kmsg.ConfigSourceDynamicTopicConfig
	case t == metadata.ResourceGroup:
		return kmsg.ConfigSourceGroupConfig
	case name == "":
		return kmsg.ConfigSourceDynamicDefaultBrokerConfig
	}
	return kmsg.ConfigSourceDynamicBrokerConfig
}

// alterConfigs validates and applies one resource's changes.
func (b *Broker) alterConfigs(ctx context.Context, typ kmsg.ConfigResourceType, name string, changes map[string]*string, replace, validateOnly bool) error {
	if typ == kmsg.ConfigResourceTypeTopic && name == "" {
		// Kafka has no cluster-wide topic defaults to alter.
		return &configError{kerr.InvalidRequest, "default topic resources are not allowed"}
	}
	r, defs, err := b.configResource(b.meta.Image(), typ, name)
	if err != nil {
		return err
	}
	if err := validateConfigs(defs, changes); err != nil {
		return invalidConfig(err)
	}
	if validateOnly {
		return nil
	}
	return b.meta.AlterConfigs(ctx, r, changes, replace)
}

func (b *Broker) handleAlterConfigs(ctx context.Context, req *kmsg.AlterConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.AlterConfigsResponse)
	for _, rr := range req.Resources {
		changes := make(map[string]*string, len(rr.Configs))
		for _, c := range rr.Configs {
			changes[c.Name] = c.Value
		}
		res := kmsg.NewAlterConfigsResponseResource()
		res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
		res.ErrorCode, res.ErrorMessage = errorCode(b.alterConfigs(ctx, rr.ResourceType, rr.ResourceName, changes, true, req.ValidateOnly))
		resp.Resources = append(resp.Resources, res)
	}
	return resp
}

func (b *Broker) handleIncrementalAlterConfigs(ctx context.Context, req *kmsg.IncrementalAlterConfigsRequest) kmsg.Response {
	resp := req.ResponseKind().(*kmsg.IncrementalAlterConfigsResponse)
	img := b.meta.Image()
	for _, rr := range req.Resources {
		res := kmsg.NewIncrementalAlterConfigsResponseResource()
		res.ResourceType, res.ResourceName = rr.ResourceType, rr.ResourceName
		changes, err := incrementalChanges(img, rr)
		if err == nil {
			err = b.alterConfigs(ctx, rr.ResourceType, rr.ResourceName, changes, false, req.ValidateOnly)
		}
		res.ErrorCode, res.ErrorMessage = errorCode(err)
		resp.Resources = append(resp.Resources, res)
	}
	return resp
}

// incrementalChanges turns set/delete/append/subtract operations into the
// values to store. Append and subtract apply to list keys only.
func incrementalChanges(img *metadata.Image, rr kmsg.IncrementalAlterConfigsRequestResource) (map[string]*string, error) {
	cur := img.Configs[metadata.ConfigResource{Type: metadata.ResourceType(rr.ResourceType), Name: rr.ResourceName}]
	changes := make(map[string]*string, len(rr.Configs))
	for _, c := range rr.Configs {
		if _, dup := changes[c.Name]; dup {
			return nil, &configError{kerr.InvalidRequest, fmt.Sprintf("config %q appears twice", c.Name)}
		}
		switch c.Op {
		case kmsg.IncrementalAlterConfigOpSet:
			if c.Value == nil {
				return nil, invalidConfig(fmt.Errorf("null value for %s", c.Name))
			}
			changes[c.Name] = c.Value
		case kmsg.IncrementalAlterConfigOpDelete:
			changes[c.Name] = nil
		case kmsg.IncrementalAlterConfigOpAppend, kmsg.IncrementalAlterConfigOpSubtract:
			d := findDef(topicConfigs, c.Name)
			if d == nil || d.typ != kmsg.ConfigTypeList || c.Value == nil {
				return nil, invalidConfig(fmt.Errorf("append and subtract need a list config, %s is not one", c.Name))
			}
			v, ok := cur[c.Name]
			if !ok {
				v = d.def
			}
			items := strings.Split(v, ",")
			for it := range strings.SplitSeq(*c.Value, ",") {
				has := slices.Contains(items, it)
				switch {
				case c.Op == kmsg.IncrementalAlterConfigOpAppend && !has:
					items = append(items, it)
				case c.Op == kmsg.IncrementalAlterConfigOpSubtract && has:
					items = slices.DeleteFunc(items, func(s string) bool { return s == it })
				}
			}
			changes[c.Name] = kmsg.StringPtr(strings.Join(items, ","))
		default:
			return nil, &configError{kerr.InvalidRequest, fmt.Sprintf("unknown config operation %d", c.Op)}
		}
	}
	return changes, nil
}
